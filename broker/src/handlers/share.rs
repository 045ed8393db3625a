//! Share groups (KIP-932): ShareGroupHeartbeat (1) at the group coordinator, ShareFetch (1)
//! and ShareAcknowledge (1) at the partitions' leaders, ShareGroupDescribe (1).

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::future::select_all;
use kafka_protocol::messages::share_acknowledge_response;
use kafka_protocol::messages::share_fetch_response::{
    AcquiredRecords, LeaderIdAndEpoch, NodeEndpoint, PartitionData, ShareFetchableTopicResponse,
};
use kafka_protocol::messages::share_group_describe_response;
use kafka_protocol::messages::share_group_heartbeat_response;
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;
use tokio::sync::watch;
use tokio::time::Instant;
use uuid::Uuid;

use super::consumer_groups::ImageTopics;
use super::groups::coordinator_log;
use super::{leader_log, str_bytes, topic_name};
use crate::log::{batch, PartitionLog, ReadLimit};
use crate::share::{partition, SessionStep, ShareHeartbeat, ShareKey, Snapshot};
use crate::Broker;

const INVALID_REQUEST: i16 = 42;
pub(super) const GROUP_ID_NOT_FOUND: i16 = 69;
/// The longest a ShareFetch waits for records.
const MAX_WAIT_CAP: Duration = Duration::from_secs(30);

pub fn heartbeat(
    broker: &Broker,
    req: ShareGroupHeartbeatRequest,
    client_id: &str,
    host: &str,
) -> ShareGroupHeartbeatResponse {
    let fail = |code: i16, message: Option<String>| {
        ShareGroupHeartbeatResponse::default()
            .with_error_code(code)
            .with_error_message(message.map(str_bytes))
            .with_member_epoch(req.member_epoch)
    };
    if let Err(code) = coordinator_log(broker, req.group_id.as_str()) {
        return fail(code, None);
    }
    if broker.groups.describe(req.group_id.as_str()).is_some() {
        return fail(
            GROUP_ID_NOT_FOUND,
            Some(format!(
                "Group {} is not a share group.",
                req.group_id.as_str()
            )),
        );
    }
    let image = broker.image();
    let out = broker.share.groups.heartbeat(
        ShareHeartbeat {
            group_id: req.group_id.to_string(),
            member_id: req.member_id.to_string(),
            member_epoch: req.member_epoch,
            rack_id: req.rack_id.as_ref().map(|s| s.to_string()),
            topics: req
                .subscribed_topic_names
                .as_ref()
                .map(|ts| ts.iter().map(|t| t.to_string()).collect()),
            client_id: client_id.to_string(),
            host: host.to_string(),
        },
        &ImageTopics(&image),
        &broker.share.config_of(&req.group_id),
    );
    ShareGroupHeartbeatResponse::default()
        .with_error_code(out.error)
        .with_error_message(out.message.map(str_bytes))
        .with_member_id((!out.member_id.is_empty()).then(|| str_bytes(out.member_id)))
        .with_member_epoch(out.member_epoch)
        .with_heartbeat_interval_ms(out.heartbeat_interval_ms)
        .with_assignment(out.assignment.map(|a| {
            share_group_heartbeat_response::Assignment::default().with_topic_partitions(
                a.into_iter()
                    .map(|(id, ps)| {
                        share_group_heartbeat_response::TopicPartitions::default()
                            .with_topic_id(id)
                            .with_partitions(ps.into_iter().collect())
                    })
                    .collect(),
            )
        }))
}

pub fn describe(broker: &Broker, req: ShareGroupDescribeRequest) -> ShareGroupDescribeResponse {
    use share_group_describe_response::{Assignment, DescribedGroup, Member, TopicPartitions};
    let image = broker.image();
    ShareGroupDescribeResponse::default().with_groups(
        req.group_ids
            .iter()
            .map(|g| {
                let base = DescribedGroup::default()
                    .with_group_id(g.clone())
                    .with_authorized_operations(i32::MIN);
                if let Err(code) = coordinator_log(broker, g.as_str()) {
                    return base.with_error_code(code);
                }
                let v = broker.share.groups.describe(g.as_str()).or_else(|| {
                    // Known by its durable state only (members are in the coordinator's
                    // memory: after a coordinator move, until one heartbeats): empty.
                    (has_state(broker, g.as_str()) && broker.groups.describe(g.as_str()).is_none())
                        .then(crate::share::group::ShareGroupView::empty)
                });
                let Some(v) = v else {
                    return base
                        .with_error_code(GROUP_ID_NOT_FOUND)
                        .with_error_message(Some(str_bytes(format!(
                            "Group {} is not a share group.",
                            g.as_str()
                        ))));
                };
                base.with_group_state(str_bytes(v.state))
                    .with_group_epoch(v.epoch)
                    .with_assignment_epoch(v.epoch)
                    .with_assignor_name(str_bytes("simple"))
                    .with_members(
                        v.members
                            .iter()
                            .map(|m| {
                                Member::default()
                                    .with_member_id(str_bytes(m.member_id.clone()))
                                    .with_rack_id(m.rack_id.clone().map(str_bytes))
                                    .with_member_epoch(m.member_epoch)
                                    .with_client_id(str_bytes(m.client_id.clone()))
                                    .with_client_host(str_bytes(m.host.clone()))
                                    .with_subscribed_topic_names(
                                        m.topics.iter().map(|t| topic_name(t)).collect(),
                                    )
                                    .with_assignment(
                                        Assignment::default().with_topic_partitions(
                                            m.assignment
                                                .iter()
                                                .map(|(id, ps)| {
                                                    let name = image
                                                        .topic_by_id(id)
                                                        .map(|t| t.name.clone())
                                                        .or_else(|| v.topic_names.get(id).cloned())
                                                        .unwrap_or_default();
                                                    TopicPartitions::default()
                                                        .with_topic_id(*id)
                                                        .with_topic_name(topic_name(&name))
                                                        .with_partitions(
                                                            ps.iter().copied().collect(),
                                                        )
                                                })
                                                .collect(),
                                        ),
                                    )
                            })
                            .collect(),
                    )
            })
            .collect(),
    )
}

/// The log of a share-partition this broker leads, or the partition's error code.
pub(super) fn share_log(
    broker: &Broker,
    topic: &Uuid,
    partition: i32,
) -> Result<Arc<PartitionLog>, i16> {
    let image = broker.image();
    let Some(t) = image.topic_by_id(topic) else {
        return Err(ResponseError::UnknownTopicId.code());
    };
    leader_log(broker, &image, Some(t), partition).map_err(|e| e.code())
}

pub(super) fn leader_of(broker: &Broker, topic: &Uuid, partition: i32) -> (i32, i32) {
    let image = broker.image();
    image
        .topic_by_id(topic)
        .and_then(|t| t.partitions.get(partition.max(0) as usize))
        .map_or((-1, -1), |p| (p.leader, p.leader_epoch))
}

/// Applies acknowledgement batches to a share-partition; the partition's error code.
fn acknowledge(
    broker: &Broker,
    group: &str,
    member: &str,
    topic: Uuid,
    partition: i32,
    batches: &[(i64, i64, Vec<i8>)],
) -> i16 {
    // Still this partition's leader (the error code if not).
    if let Err(code) = share_log(broker, &topic, partition) {
        return code;
    }
    let config = broker.share.config_of(group);
    broker
        .share
        .with_partition(&(group.to_string(), topic, partition), |sp| {
            sp.expire_locks(std::time::Instant::now(), &config);
            for (first, last, types) in batches {
                if let Err(code) = sp.acknowledge(member, *first, *last, types, &config) {
                    return code;
                }
            }
            0
        })
        .unwrap_or(GONE)
}

/// A share-partition that went away under a request (its leadership moved, or it is being
/// set up again): the client finds the leader and fetches again.
const GONE: i16 = 6; // NOT_LEADER_OR_FOLLOWER

/// How far a share group reads a partition: the last stable offset under
/// `share.isolation.level=read_committed`, else the high watermark.
fn readable_end(log: &PartitionLog, config: &partition::ShareConfig) -> i64 {
    if config.read_committed {
        log.last_stable_offset()
    } else {
        log.high_watermark()
    }
}

/// Where a share-partition new to its group starts, as `share.auto.offset.reset` says.
pub(super) fn start_offset(log: &PartitionLog, config: &partition::ShareConfig) -> i64 {
    use metadata_quorum::configs::ShareAutoOffsetReset as Reset;
    let end = readable_end(log, config);
    match config.auto_offset_reset {
        Reset::Earliest => log.state().log_start_offset,
        Reset::Latest => end,
        Reset::ByDuration(ms) => {
            let since = unix_now_ms().saturating_sub(ms);
            match log.offset_for_timestamp(since) {
                // Only what consumers may see: a record past the high watermark may be
                // written later than `since` by the time it is committed, but it is read
                // from the start like any record the window reaches.
                Ok(Some(found)) => found.offset.min(end),
                Ok(None) => end,
                Err(e) => {
                    tracing::warn!(error = %e, "share.auto.offset.reset by_duration: time index unreadable, starting at the end");
                    end
                }
            }
        }
    }
}

fn unix_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// What one share-partition gave a ShareFetch.
struct Fetched {
    error: i16,
    records: Option<bytes::Bytes>,
    acquired: Vec<partition::Acquired>,
    /// Whether the window took in batches from the log (perhaps only archived ones: markers,
    /// aborted transactions under read_committed), so reading on may find more at once.
    moved: bool,
}

/// Acquires up to `max` records of one share-partition for `member`.
fn acquire(
    broker: &Broker,
    group: &str,
    member: &str,
    topic: Uuid,
    partition: i32,
    max: usize,
    max_bytes: usize,
) -> Fetched {
    let log = match share_log(broker, &topic, partition) {
        Ok(log) => log,
        Err(error) => {
            return Fetched {
                error,
                records: None,
                acquired: vec![],
                moved: false,
            }
        }
    };
    let config = broker.share.config_of(group);
    let now = std::time::Instant::now();
    let key = (group.to_string(), topic, partition);
    let budget = max_bytes.min(READ_CAP);
    let gone = || Fetched {
        error: GONE,
        records: None,
        acquired: vec![],
        moved: false,
    };
    // The window's end, then the log read without the share lock, then the acquisition.
    let Some((end, room)) = broker.share.with_partition(&key, |sp| {
        sp.expire_locks(now, &config);
        sp.skip_to(log.state().log_start_offset);
        (sp.end(), sp.has_room(&config))
    }) else {
        return gone();
    };
    let mut spans = Vec::new();
    if room && end < readable_end(&log, &config) {
        let limit = if config.read_committed {
            ReadLimit::LastStable
        } else {
            ReadLimit::HighWatermark
        };
        if let Ok(batches) = log
            .read_up_to(end, budget, limit)
            .and_then(|r| batch::parse_replicated(&r.records))
        {
            let last = batches
                .last()
                .map_or(end, |b| b.base_offset() + b.last_offset_delta as i64);
            // Under read_committed a batch of an aborted transaction is done at once, as
            // a marker is: its producer's abort covers it (Kafka archives them too).
            let aborted = if config.read_committed {
                log.aborted_between(end, last + 1)
            } else {
                Vec::new()
            };
            spans = batches
                .iter()
                .map(|b| {
                    let base = b.base_offset();
                    let in_aborted = b.is_transactional()
                        && aborted.iter().any(|a| {
                            a.producer_id == b.producer_id
                                && a.first_offset <= base
                                && base < a.last_offset
                        });
                    (
                        base,
                        base + b.last_offset_delta as i64,
                        b.is_control() || in_aborted,
                    )
                })
                .collect();
        }
    }
    let Some((acquired, moved)) = broker.share.with_partition(&key, |sp| {
        // Read at another end (another request took them, or the window was set up
        // again): only what is available again is taken now.
        let spans: &[partition::BatchSpan] = if sp.end() == end { &spans } else { &[] };
        let acquired = sp.acquire(member, max, spans, now, &config);
        (acquired, sp.end() > end)
    }) else {
        return gone();
    };
    if acquired.is_empty() {
        return Fetched {
            error: 0,
            records: None,
            acquired,
            moved,
        };
    }
    // The batches holding each acquired range, up to the byte budget (at least one batch);
    // the client keeps only the acquired offsets. What does not fit is given back.
    let mut keep = bytes::BytesMut::new();
    let mut left = budget;
    let mut covered = -1i64;
    'ranges: for a in &acquired {
        let mut pos = a.first.max(covered + 1);
        while pos <= a.last {
            if left == 0 {
                break 'ranges;
            }
            let Ok(batches) = log
                .read(pos, left)
                .and_then(|r| batch::parse_replicated(&r.records))
            else {
                break 'ranges;
            };
            let before = pos;
            for b in &batches {
                let (bf, bl) = (
                    b.base_offset(),
                    b.base_offset() + b.last_offset_delta as i64,
                );
                if bf > a.last {
                    break;
                }
                if bl < pos {
                    continue;
                }
                if b.bytes.len() > left && !keep.is_empty() {
                    left = 0;
                    break;
                }
                keep.extend_from_slice(&b.bytes);
                left = left.saturating_sub(b.bytes.len());
                covered = bl;
                pos = bl + 1;
            }
            if pos == before {
                break 'ranges;
            }
        }
    }
    let (sent, unsent): (Vec<partition::Acquired>, Vec<partition::Acquired>) =
        acquired.into_iter().partition(|a| a.first <= covered);
    let mut sent = sent;
    let mut unsent = unsent;
    if let Some(last) = sent.last_mut() {
        if last.last > covered {
            unsent.push(partition::Acquired {
                first: covered + 1,
                ..*last
            });
            last.last = covered;
        }
    }
    if !unsent.is_empty() {
        broker.share.with_partition(&key, |sp| {
            for a in &unsent {
                sp.give_back(member, a.first, a.last);
            }
        });
    }
    Fetched {
        error: 0,
        records: Some(keep.freeze()),
        acquired: sent,
        moved,
    }
}

/// The most a ShareFetch reads from one partition's log at once.
const READ_CAP: usize = 8 << 20;

type AckBatches = Vec<(i64, i64, Vec<i8>)>;

pub async fn fetch(broker: &Broker, req: ShareFetchRequest, listener: &str) -> ShareFetchResponse {
    let fail = |code: i16, message: &str| {
        ShareFetchResponse::default()
            .with_error_code(code)
            .with_error_message(Some(str_bytes(message)))
    };
    let (Some(group), Some(member)) = (req.group_id.as_ref(), req.member_id.as_ref()) else {
        return fail(INVALID_REQUEST, "GroupId and MemberId are required.");
    };
    let (group, member) = (group.to_string(), member.to_string());
    if group.is_empty() || member.is_empty() {
        return fail(INVALID_REQUEST, "GroupId and MemberId are required.");
    }
    let asked: Vec<(Uuid, i32)> = req
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(move |p| (t.topic_id, p.partition_index))
        })
        .collect();
    let forgotten: Vec<(Uuid, i32)> = req
        .forgotten_topics_data
        .iter()
        .flat_map(|t| t.partitions.iter().map(move |p| (t.topic_id, *p)))
        .collect();
    // The same topic may come in several entries: their partitions and acks add up.
    let mut acks: BTreeMap<(Uuid, i32), AckBatches> = BTreeMap::new();
    for t in &req.topics {
        for p in t
            .partitions
            .iter()
            .filter(|p| !p.acknowledgement_batches.is_empty())
        {
            acks.entry((t.topic_id, p.partition_index))
                .or_default()
                .extend(
                    p.acknowledgement_batches
                        .iter()
                        .map(|b| (b.first_offset, b.last_offset, b.acknowledge_types.clone())),
                );
        }
    }
    if req.share_session_epoch == 0 && !acks.is_empty() {
        return fail(
            INVALID_REQUEST,
            "a ShareFetch opening a session carries no acknowledgements",
        );
    }
    let step = match broker.share.session(
        &group,
        &member,
        req.share_session_epoch,
        asked.iter().copied(),
        forgotten.iter().copied(),
    ) {
        Ok(step) => step,
        Err(code) => {
            return fail(
                code,
                "the share session could not be used (see the error code)",
            )
        }
    };
    let mut ack_codes: BTreeMap<(Uuid, i32), i16> = BTreeMap::new();
    for ((t, p), batches) in &acks {
        let code = match ensure_partition(broker, &group, *t, *p).await {
            0 => acknowledge(broker, &group, &member, *t, *p, batches),
            code => code,
        };
        ack_codes.insert((*t, *p), code);
    }
    let mut out: BTreeMap<(Uuid, i32), (Option<Fetched>, Option<i16>)> = ack_codes
        .iter()
        .map(|(k, code)| (*k, (None, Some(*code))))
        .collect();
    let mut changed: BTreeSet<(Uuid, i32)> = ack_codes
        .iter()
        .filter(|(_, code)| **code == 0)
        .map(|(k, _)| *k)
        .collect();
    let partitions = match step {
        SessionStep::Close(parts) => {
            broker.share.release_member(&group, &member, &parts);
            changed.extend(parts);
            persist_acknowledged(broker, &group, changed).await;
            return respond(broker, &group, out, listener);
        }
        SessionStep::Fetch(parts) => parts,
    };
    persist_acknowledged(broker, &group, changed).await;
    // A partition whose share-partition cannot be set up now answers its error. They are
    // set up side by side (each may ask and write its group's coordinator).
    let mut ready = BTreeSet::new();
    let setups = futures::future::join_all(
        partitions
            .iter()
            .map(|(t, p)| ensure_partition(broker, &group, *t, *p)),
    )
    .await;
    for ((t, p), code) in partitions.iter().zip(setups) {
        match code {
            0 => {
                ready.insert((*t, *p));
            }
            error => {
                out.entry((*t, *p)).or_insert((None, None)).0 = Some(Fetched {
                    error,
                    records: None,
                    acquired: vec![],
                    moved: false,
                });
            }
        }
    }
    let partitions = ready;
    let max_records = if req.max_records <= 0 {
        500
    } else {
        req.max_records as usize
    };
    let max_bytes = if req.max_bytes <= 0 {
        50 << 20
    } else {
        req.max_bytes as usize
    };
    let deadline =
        Instant::now() + Duration::from_millis(req.max_wait_ms.max(0) as u64).min(MAX_WAIT_CAP);
    loop {
        let mut watchers: Vec<watch::Receiver<i64>> = Vec::new();
        let mut budget = max_records;
        let mut got_any = false;
        let mut moved = false;
        for (t, p) in &partitions {
            if let Ok(log) = share_log(broker, t, *p) {
                watchers.push(log.subscribe());
            }
            let fetched = acquire(broker, &group, &member, *t, *p, budget, max_bytes);
            budget = budget.saturating_sub(
                fetched
                    .acquired
                    .iter()
                    .map(|a| (a.last - a.first + 1) as usize)
                    .sum(),
            );
            got_any |= !fetched.acquired.is_empty();
            moved |= fetched.moved;
            if fetched.error != 0 || !fetched.acquired.is_empty() {
                out.entry((*t, *p)).or_insert((None, None)).0 = Some(fetched);
            }
            if budget == 0 {
                break;
            }
        }
        let now = Instant::now();
        if got_any || now >= deadline || watchers.is_empty() || !ack_codes.is_empty() {
            return respond(broker, &group, out, listener);
        }
        if moved {
            // Only archived batches came in (markers, aborted transactions): there may be
            // records right behind them.
            continue;
        }
        // Nothing yet: wait for an append, a lock to run out, or the deadline.
        let changes: Vec<Pin<Box<dyn Future<Output = _> + Send + '_>>> = watchers
            .iter_mut()
            .map(|w| Box::pin(w.changed()) as Pin<Box<dyn Future<Output = _> + Send + '_>>)
            .collect();
        let until = deadline.min(now + Duration::from_millis(250));
        let _ = tokio::time::timeout_at(until, select_all(changes)).await;
    }
}

fn respond(
    broker: &Broker,
    group: &str,
    out: BTreeMap<(Uuid, i32), (Option<Fetched>, Option<i16>)>,
    listener: &str,
) -> ShareFetchResponse {
    let mut by_topic: BTreeMap<Uuid, Vec<PartitionData>> = BTreeMap::new();
    let mut leaders: BTreeSet<i32> = BTreeSet::new();
    for ((t, p), (fetched, ack)) in out {
        // Records are never null (librdkafka reads them as an array), and the current
        // leader is -1/-1 unless it moved.
        let mut data = PartitionData::default()
            .with_partition_index(p)
            .with_acknowledge_error_code(ack.unwrap_or(0))
            .with_records(Some(bytes::Bytes::new()))
            .with_current_leader(
                LeaderIdAndEpoch::default()
                    .with_leader_id(-1)
                    .with_leader_epoch(-1),
            );
        if let Some(f) = fetched {
            data = data
                .with_error_code(f.error)
                .with_records(Some(f.records.unwrap_or_default()))
                .with_acquired_records(
                    f.acquired
                        .iter()
                        .map(|a| {
                            AcquiredRecords::default()
                                .with_first_offset(a.first)
                                .with_last_offset(a.last)
                                .with_delivery_count(a.delivery_count)
                        })
                        .collect(),
                );
            if f.error == ResponseError::NotLeaderOrFollower.code() {
                let (leader, epoch) = leader_of(broker, &t, p);
                leaders.insert(leader);
                data = data.with_current_leader(
                    LeaderIdAndEpoch::default()
                        .with_leader_id(leader)
                        .with_leader_epoch(epoch),
                );
            }
        }
        by_topic.entry(t).or_default().push(data);
    }
    let image = broker.image();
    ShareFetchResponse::default()
        .with_acquisition_lock_timeout_ms(
            broker
                .share
                .config_of(group)
                .lock_duration
                .as_millis()
                .min(i32::MAX as u128) as i32,
        )
        .with_responses(
            by_topic
                .into_iter()
                .map(|(t, ps)| {
                    ShareFetchableTopicResponse::default()
                        .with_topic_id(t)
                        .with_partitions(ps)
                })
                .collect(),
        )
        .with_node_endpoints(
            leaders
                .into_iter()
                .filter_map(|id| {
                    let b = image.brokers.get(&id)?;
                    let e = super::client_endpoint(b, listener)?;
                    Some(
                        NodeEndpoint::default()
                            .with_node_id(id.into())
                            .with_host(str_bytes(e.host.clone()))
                            .with_port(e.port as i32)
                            .with_rack(b.rack.clone().map(str_bytes)),
                    )
                })
                .collect(),
        )
}

pub async fn acknowledge_request(
    broker: &Broker,
    req: ShareAcknowledgeRequest,
) -> ShareAcknowledgeResponse {
    use share_acknowledge_response::{PartitionData, ShareAcknowledgeTopicResponse};
    let fail = |code: i16, message: &str| {
        ShareAcknowledgeResponse::default()
            .with_error_code(code)
            .with_error_message(Some(str_bytes(message)))
    };
    let (Some(group), Some(member)) = (req.group_id.as_ref(), req.member_id.as_ref()) else {
        return fail(INVALID_REQUEST, "GroupId and MemberId are required.");
    };
    let (group, member) = (group.to_string(), member.to_string());
    if req.share_session_epoch == 0 {
        return fail(
            crate::share::INVALID_SHARE_SESSION_EPOCH,
            "ShareAcknowledge cannot open a share session",
        );
    }
    let step = match broker
        .share
        .session(&group, &member, req.share_session_epoch, [], [])
    {
        Ok(step) => step,
        Err(code) => {
            return fail(
                code,
                "the share session could not be used (see the error code)",
            )
        }
    };
    let mut responses = Vec::new();
    let mut changed: BTreeSet<(Uuid, i32)> = BTreeSet::new();
    for t in &req.topics {
        let mut partitions = Vec::new();
        for p in &t.partitions {
            let batches: AckBatches = p
                .acknowledgement_batches
                .iter()
                .map(|b| (b.first_offset, b.last_offset, b.acknowledge_types.clone()))
                .collect();
            let code = match ensure_partition(broker, &group, t.topic_id, p.partition_index).await {
                0 => acknowledge(
                    broker,
                    &group,
                    &member,
                    t.topic_id,
                    p.partition_index,
                    &batches,
                ),
                code => code,
            };
            if code == 0 {
                changed.insert((t.topic_id, p.partition_index));
            }
            let (leader, epoch) = if code == ResponseError::NotLeaderOrFollower.code() {
                leader_of(broker, &t.topic_id, p.partition_index)
            } else {
                (-1, -1)
            };
            partitions.push(
                PartitionData::default()
                    .with_partition_index(p.partition_index)
                    .with_error_code(code)
                    .with_current_leader(
                        share_acknowledge_response::LeaderIdAndEpoch::default()
                            .with_leader_id(leader)
                            .with_leader_epoch(epoch),
                    ),
            );
        }
        responses.push(
            ShareAcknowledgeTopicResponse::default()
                .with_topic_id(t.topic_id)
                .with_partitions(partitions),
        );
    }
    if let SessionStep::Close(parts) = step {
        broker.share.release_member(&group, &member, &parts);
        changed.extend(parts);
    }
    persist_acknowledged(broker, &group, changed).await;
    ShareAcknowledgeResponse::default().with_responses(responses)
}

/// The group id a share group's durable starts are committed under: the share group's id
/// and a NUL, so they never mix with the offsets of a classic or consumer group of the same
/// name (and are left out of group listings).
pub(super) fn state_group(share_group: &str) -> String {
    format!("{share_group}{}", crate::group::SHARE_STATE_SUFFIX)
}

/// Whether the coordinator here holds durable state of `group` (a deleted topic's marker,
/// offset -1, is none).
pub(super) fn has_state(broker: &Broker, group: &str) -> bool {
    broker
        .groups
        .committed_all(&state_group(group))
        .iter()
        .any(|(_, _, c)| c.offset >= 0)
}

/// The broker leading the `__consumer_offsets` partition of `group` (its coordinator).
pub(super) fn coordinator_of(broker: &Broker, group: &str) -> Option<i32> {
    let image = broker.image();
    image
        .topic(crate::group::OFFSETS_TOPIC)
        .and_then(|t| {
            t.partitions
                .get(crate::group::offsets_partition(group) as usize)
        })
        .map(|p| p.leader)
        .filter(|l| *l >= 0)
}

/// Sends `request` to broker `node` over the inter-broker listener, under the broker's
/// client id (a coordinator takes writes to a share group's state only from brokers),
/// within 5 s.
async fn send_to<R: kafka_protocol::protocol::Request>(
    broker: &Broker,
    node: i32,
    request: R,
    version: i16,
) -> Option<R::Response> {
    crate::txn::ops::broker_call(broker, node, request, version, Duration::from_secs(5), None)
        .await
        .ok()
}

/// The snapshot of the share-partition the group last made durable (its committed offset
/// for the partition at the group's coordinator, the state in the commit's metadata):
/// Ok(None) if it never did (or did for a deleted topic of the same name), Err if the
/// coordinator cannot be asked now.
async fn durable_state(
    broker: &Broker,
    group: &str,
    (topic, topic_id): (&str, Uuid),
    partition: i32,
) -> Result<Option<Snapshot>, ()> {
    let group = &state_group(group);
    let coordinator = coordinator_of(broker, group).ok_or(())?;
    if coordinator == broker.node_id {
        coordinator_log(broker, group).map_err(|_| ())?;
        return Ok(broker
            .groups
            .committed(group, topic, partition)
            .filter(|c| c.offset >= 0)
            .and_then(|c| {
                Snapshot::from_commit(
                    c.offset,
                    c.metadata.as_deref(),
                    max_window(broker),
                    topic_id,
                )
            }));
    }
    use kafka_protocol::messages::offset_fetch_request::{
        OffsetFetchRequestGroup, OffsetFetchRequestTopics,
    };
    let request =
        OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default()
            .with_group_id(GroupId(str_bytes(group)))
            .with_topics(Some(vec![OffsetFetchRequestTopics::default()
                .with_name(topic_name(topic))
                .with_partition_indexes(vec![partition])]))]);
    let response = send_to(broker, coordinator, request, 8).await.ok_or(())?;
    let g = response.groups.into_iter().next().ok_or(())?;
    if g.error_code != 0 {
        return Err(());
    }
    Ok(g.topics
        .into_iter()
        .flat_map(|t| t.partitions)
        .find(|p| p.partition_index == partition && p.error_code == 0)
        .filter(|p| p.committed_offset >= 0)
        .and_then(|p| {
            Snapshot::from_commit(
                p.committed_offset,
                p.metadata.as_deref(),
                max_window(broker),
                topic_id,
            )
        }))
}

/// The widest window a leader can have written: the largest in-flight limit a group can
/// have (`share.partition.max.record.locks` may have been higher when it was written) and
/// the batch that crossed it (a batch that starts inside the window enters whole).
fn max_window(broker: &Broker) -> i64 {
    broker
        .share
        .config
        .max_in_flight
        .max(metadata_quorum::configs::MAX_SHARE_PARTITION_MAX_RECORD_LOCKS)
        .saturating_add(100_000)
}

/// Makes sure this leader has the share-partition of (group, topic, partition), set up
/// from the group's durable state (or, if the group never had one, as
/// `share.auto.offset.reset` says) and written back at this leader's epoch before anything
/// is served from it: the start a new share-partition chose is durable before a record is
/// delivered (a new leader would otherwise choose its own and skip what lies between), and
/// the write fences the previous leader's late ones. An error code when the coordinator
/// cannot be asked or written to now (the client fetches again).
pub(crate) async fn ensure_partition(
    broker: &Broker,
    group: &str,
    topic: Uuid,
    partition: i32,
) -> i16 {
    let key = (group.to_string(), topic, partition);
    let log = match share_log(broker, &topic, partition) {
        Ok(log) => log,
        Err(code) => return code,
    };
    let (_, epoch) = leader_of(broker, &topic, partition);
    let setup = match broker.share.setup_of(&key) {
        Some((_, at)) if at != epoch => {
            // Set up at another leader epoch: leadership went away and came back, and the
            // leader in between may have moved it. Set up again from the durable state.
            broker.share.remove_partition(&key);
            None
        }
        other => other,
    };
    match setup {
        Some((true, _)) => return 0,
        Some((false, _)) => {}
        None => {
            let Some(name) = broker.image().topic_by_id(&topic).map(|t| t.name.clone()) else {
                return ResponseError::UnknownTopicId.code();
            };
            // A reset or delete of the group's state (AlterShareGroupOffsets,
            // DeleteShareGroupOffsets) while the durable state is read makes what was read
            // stale: it is not set up (the client fetches again).
            let generation = broker.share.generation(group);
            let snapshot = match durable_state(broker, group, (&name, topic), partition).await {
                Ok(Some(snapshot)) => snapshot,
                Ok(None) => Snapshot::at(start_offset(&log, &broker.share.config_of(group))),
                Err(()) => return ResponseError::CoordinatorNotAvailable.code(),
            };
            let lock = broker.share.persist_lock(group);
            let _writing = lock.lock().await;
            if broker.share.generation(group) != generation {
                return GONE;
            }
            // The window may reach past this leader's high watermark for a moment (the old
            // leader's moved first): its records were committed there, and this leader's
            // log has them.
            broker.share.create_partition(
                key.clone(),
                &snapshot,
                (log.state().log_start_offset, log.log_end_offset()),
                epoch,
            );
        }
    }
    if persist_states(broker, Some(&BTreeSet::from([key]))).await {
        0
    } else {
        ResponseError::CoordinatorNotAvailable.code()
    }
}

/// Makes the share-partitions' state durable (all that changed, or those in `only`):
/// each snapshot committed as the share group's offset for the partition at its coordinator
/// (the start as the offset, the window in the metadata, this leader's epoch as the
/// offset's leader epoch), replicated in `__consumer_offsets`, so a new leader resumes from
/// it. Groups are written side by side, each under its own lock. Whether every snapshot was
/// written.
pub async fn persist_states(broker: &Broker, only: Option<&BTreeSet<ShareKey>>) -> bool {
    let writes = broker
        .share
        .keys_by_group(only)
        .into_iter()
        .map(|(group, keys)| persist_group(broker, group, keys));
    futures::future::join_all(writes)
        .await
        .into_iter()
        .all(|ok| ok)
}

/// Writes the snapshots of `keys` (one share group's partitions) that changed since they
/// were last written (each is taken once, under the group's lock).
async fn persist_group(broker: &Broker, share_group: String, keys: BTreeSet<ShareKey>) -> bool {
    let lock = broker.share.persist_lock(&share_group);
    let _writing = lock.lock().await;
    write_group(broker, share_group, keys).await
}

/// [`persist_group`] with the group's lock already held by the caller.
pub(super) async fn write_group(
    broker: &Broker,
    share_group: String,
    keys: BTreeSet<ShareKey>,
) -> bool {
    // Taken under the group's lock: no older snapshot is written after this one.
    let states = broker.share.states_to_persist(Some(&keys));
    if states.is_empty() {
        return true;
    }
    let group = state_group(&share_group);
    let image = broker.image();
    // Only partitions this broker still leads at the epoch it set them up at: one that lost
    // leadership and got it back in between holds a window another leader may have moved
    // since (ensure_partition sets it up again before it writes).
    let named: Vec<(String, Uuid, i32, i32, Snapshot)> = states
        .into_iter()
        .filter_map(|((_, t, p), s, setup_epoch)| {
            let topic = image.topic_by_id(&t)?;
            let part = topic.partitions.get(usize::try_from(p).ok()?)?;
            (part.leader == broker.node_id && part.leader_epoch == setup_epoch)
                .then(|| (topic.name.clone(), t, p, part.leader_epoch, s))
        })
        .collect();
    if named.is_empty() {
        return false;
    }
    let entries: Vec<(String, i32, crate::group::Committed)> = named
        .iter()
        .map(|(name, t, p, epoch, s)| {
            (
                name.clone(),
                *p,
                crate::group::Committed {
                    offset: s.start,
                    leader_epoch: *epoch,
                    metadata: Some(s.to_metadata(*t)),
                    commit_timestamp: crate::log::now_ms(),
                },
            )
        })
        .collect();
    let ok = commit_states(broker, &share_group, entries).await;
    if ok {
        for (_, t, p, _, s) in named {
            broker.share.persisted(&(share_group.clone(), t, p), s);
        }
    } else {
        tracing::debug!(group, "share-partition states not persisted yet");
    }
    ok
}

/// Commits share-partition states of `share_group` (start offsets with their windows, or
/// deletion markers) at the group's coordinator, here or by an OffsetCommit of its state id
/// over the inter-broker listener. Whether every partition's was taken.
pub(super) async fn commit_states(
    broker: &Broker,
    share_group: &str,
    entries: Vec<(String, i32, crate::group::Committed)>,
) -> bool {
    let group = state_group(share_group);
    let Some(coordinator) = coordinator_of(broker, &group) else {
        return false;
    };
    if coordinator == broker.node_id {
        match coordinator_log(broker, &group) {
            Ok(log) => super::groups::commit_share_state(broker, &log, &group, entries).await == 0,
            Err(_) => false,
        }
    } else {
        use kafka_protocol::messages::offset_commit_request::{
            OffsetCommitRequestPartition, OffsetCommitRequestTopic,
        };
        let mut topics: BTreeMap<&String, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
        for (name, p, c) in &entries {
            topics.entry(name).or_default().push(
                OffsetCommitRequestPartition::default()
                    .with_partition_index(*p)
                    .with_committed_offset(c.offset)
                    .with_committed_leader_epoch(c.leader_epoch)
                    .with_committed_metadata(c.metadata.clone().map(str_bytes)),
            );
        }
        let request = OffsetCommitRequest::default()
            .with_group_id(GroupId(str_bytes(group.clone())))
            .with_generation_id_or_member_epoch(-1)
            .with_topics(
                topics
                    .into_iter()
                    .map(|(name, ps)| {
                        OffsetCommitRequestTopic::default()
                            .with_name(topic_name(name))
                            .with_partitions(ps)
                    })
                    .collect(),
            );
        send_to(broker, coordinator, request, 8)
            .await
            .is_some_and(|r| {
                r.topics
                    .iter()
                    .flat_map(|t| &t.partitions)
                    .all(|p| p.error_code == 0)
            })
    }
}

/// Makes the state of the share-partitions an acknowledgement changed durable before it is
/// answered. If the coordinator cannot take it now, the periodic write keeps trying (the
/// acknowledgement stands in this leader's memory; a failover before then delivers the
/// records again, it never skips one).
async fn persist_acknowledged(
    broker: &Broker,
    group: &str,
    partitions: impl IntoIterator<Item = (Uuid, i32)>,
) {
    let keys: BTreeSet<ShareKey> = partitions
        .into_iter()
        .map(|(t, p)| (group.to_string(), t, p))
        .collect();
    if !keys.is_empty() && !persist_states(broker, Some(&keys)).await {
        tracing::warn!(
            group,
            partitions = keys.len(),
            "acknowledged share-partition state not durable yet; the periodic write retries"
        );
    }
}
