//! Fetch (4-13), for consumers and followers alike. Consumers read up to the high watermark
//! (read_committed ones, `isolation_level` 1, up to the last stable offset, with the aborted
//! transactions in that range so they can drop those records);
//! a follower (`replica_id` >= 0, a registered broker) reads up to the log end, and its fetch
//! offset tells the leader how far its log reaches, which moves the high watermark.
//! A consumer naming its rack (v11+) may be told to read from an in-sync follower in that
//! rack instead (`preferred_read_replica`, KIP-392, with --replica-selector-class), and any
//! replica serves a v11+ consumer fetch up to its high watermark, as Kafka's followers do.
//! Honours max_bytes, per-partition max bytes and min_bytes; when there is too little data it
//! parks on the partitions' watch channels until an append wakes it or max_wait_ms passes.
//! No polling loop.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::future::{select_all, Future};
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::{FetchRequest, FetchResponse, TopicName};
use kafka_protocol::ResponseError;
use strom_storage::TopicPartition;
use tokio::sync::watch;
use tokio::time::Instant;
use uuid::Uuid;

use super::topic_name;
use crate::log::{PartitionLog, ReadLimit};
use crate::replica::selector::{preferred_read_replica, ReadCandidate};
use crate::replica::throttle::{self, ReplicationThrottle, Side};
use crate::Broker;

/// The longest a fetch may park, whatever it asks for.
const MAX_WAIT_CAP: Duration = Duration::from_secs(30);
/// How soon a fetch holding back throttled partitions looks at the throttle again.
const THROTTLE_RECHECK: Duration = Duration::from_millis(100);

struct Wanted {
    index: i32,
    log: Result<Arc<PartitionLog>, ResponseError>,
    offset: i64,
    max_bytes: usize,
    leader_epoch: i32,
    limit: ReadLimit,
    /// The follower this consumer should read from instead (KIP-392).
    redirect: Option<i32>,
    /// A follower's fetch of a replica under a leader-side replication throttle (KIP-73).
    throttled: bool,
}

struct WantedTopic {
    name: TopicName,
    topic_id: Uuid,
    partitions: Vec<Wanted>,
}

pub async fn handle(broker: &Arc<Broker>, req: FetchRequest, version: i16) -> FetchResponse {
    let image = broker.image();
    let replica = req.replica_id.0;
    if replica >= 0 && !image.brokers.contains_key(&replica) {
        // Only brokers replicate; anything else claiming a replica id is refused whole.
        return FetchResponse::default()
            .with_error_code(ResponseError::ClusterAuthorizationFailed.code());
    }
    let limit = if replica >= 0 {
        ReadLimit::LogEnd
    } else if req.isolation_level == 1 {
        ReadLimit::LastStable
    } else {
        ReadLimit::HighWatermark
    };
    let now = crate::log::now_ms();
    // Any replica serves a consumer that can follow a preferred read replica (v11+), as in
    // Kafka; followers never fetch from a follower.
    let from_any_replica = replica < 0 && version >= 11;
    let client_rack = if from_any_replica {
        req.rack_id.as_str()
    } else {
        ""
    };
    // The leader-side replication throttle (KIP-73), when one is set.
    let leader_rate = (replica >= 0)
        .then(|| throttle::rate(&image, broker.node_id, Side::Leader))
        .flatten();
    let topics: Vec<WantedTopic> = req
        .topics
        .iter()
        .map(|t| {
            let topic = if version >= 13 {
                image.topic_by_id(&t.topic_id)
            } else {
                image.topic(t.topic.as_str())
            };
            let unknown = if version >= 13 {
                ResponseError::UnknownTopicId
            } else {
                ResponseError::UnknownTopicOrPartition
            };
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let mut redirect = None;
                    let mut throttled = false;
                    let log = topic.ok_or(unknown).and_then(|topic| {
                        let meta = usize::try_from(p.partition)
                            .ok()
                            .and_then(|i| topic.partitions.get(i))
                            .ok_or(ResponseError::UnknownTopicOrPartition)?;
                        let leads = meta.leader == broker.node_id;
                        let serves =
                            leads || (from_any_replica && meta.replicas.contains(&broker.node_id));
                        if !serves {
                            return Err(ResponseError::NotLeaderOrFollower);
                        }
                        let log = broker
                            .logs
                            .partition(&image, TopicPartition::new(topic.topic_id, meta.partition))
                            .map_err(|e| e.kafka_error())?
                            .ok_or(ResponseError::NotLeaderOrFollower)?;
                        if replica >= 0 {
                            log.check_leader_epoch(p.current_leader_epoch)
                                .map_err(|e| e.kafka_error())?;
                            log.follower_fetched(replica, p.fetch_offset, now)?;
                            throttled = leader_rate.is_some()
                                && throttle::throttled(
                                    &image,
                                    &topic.name,
                                    meta.partition,
                                    broker.node_id,
                                    replica,
                                    Side::Leader,
                                );
                        }
                        if leads && !client_rack.is_empty() {
                            redirect =
                                read_replica(broker, &image, &log, client_rack, p.fetch_offset);
                        }
                        Ok(log)
                    });
                    Wanted {
                        index: p.partition,
                        log,
                        offset: p.fetch_offset,
                        max_bytes: p.partition_max_bytes.max(0) as usize,
                        leader_epoch: p.current_leader_epoch,
                        limit,
                        redirect,
                        throttled,
                    }
                })
                .collect();
            WantedTopic {
                name: topic.map_or_else(|| t.topic.clone(), |t| topic_name(&t.name)),
                topic_id: topic.map_or(t.topic_id, |t| t.topic_id),
                partitions,
            }
        })
        .collect();

    let throttling = topics
        .iter()
        .flat_map(|t| t.partitions.iter())
        .any(|p| p.throttled);
    let max_wait = Duration::from_millis(req.max_wait_ms.max(0) as u64).min(MAX_WAIT_CAP);
    let deadline = Instant::now() + max_wait;
    let asked = if req.max_bytes <= 0 {
        i32::MAX as usize
    } else {
        req.max_bytes as usize
    };
    // Consumers' answers are capped by fetch.max.bytes; followers bound theirs themselves
    // (as Kafka's replica.fetch.response.max.bytes), and a cap here could starve a lagging
    // follower's later partitions out of the ISR.
    let max_bytes = if replica >= 0 {
        asked
    } else {
        asked.min(broker.config.fetch_max_bytes as usize)
    };
    let min_bytes = (req.min_bytes.max(0) as usize).min(max_bytes);

    loop {
        // Subscribe before reading, so an append between the read and the wait still wakes us.
        let mut watchers: Vec<watch::Receiver<i64>> = topics
            .iter()
            .flat_map(|t| t.partitions.iter())
            .filter_map(|p| p.log.as_ref().ok().map(|l| l.subscribe_for(p.limit)))
            .collect();
        let throttle = leader_rate.map(|r| (&broker.leader_throttle, r));
        let (response, bytes, errors) = read_once(&topics, max_bytes, version, throttle);
        let now = Instant::now();
        if bytes >= min_bytes || errors || now >= deadline || watchers.is_empty() {
            return response;
        }
        let changes: Vec<Pin<Box<dyn Future<Output = _> + Send + '_>>> = watchers
            .iter_mut()
            .map(|w| Box::pin(w.changed()) as Pin<Box<dyn Future<Output = _> + Send + '_>>)
            .collect();
        let waiting = std::time::Instant::now();
        // A partition held back by the replication throttle may be served again within a
        // fraction of a second: look again then rather than at the end of max_wait.
        let until = if throttling {
            deadline.min(now + THROTTLE_RECHECK)
        } else {
            deadline
        };
        let woken = tokio::time::timeout_at(until, select_all(changes)).await;
        crate::metrics::waited(waiting);
        if woken.is_err() {
            // Timed out: answer with whatever there is now.
            let throttle = leader_rate.map(|r| (&broker.leader_throttle, r));
            let (response, _, _) = read_once(&topics, max_bytes, version, throttle);
            return response;
        }
    }
}

/// The in-sync follower in `client_rack` a consumer should read `log` from, if the replica
/// selector picks one.
fn read_replica(
    broker: &Broker,
    image: &metadata_quorum::MetadataImage,
    log: &PartitionLog,
    client_rack: &str,
    fetch_offset: i64,
) -> Option<i32> {
    let rack_of = |b: i32| image.brokers.get(&b).and_then(|b| b.rack.clone());
    let followers: Vec<ReadCandidate> = log
        .in_sync_followers()
        .into_iter()
        .filter(|(b, _)| image.brokers.get(b).is_some_and(|b| !b.fenced))
        .map(|(broker_id, log_end_offset)| ReadCandidate {
            broker_id,
            rack: rack_of(broker_id),
            log_end_offset,
        })
        .collect();
    preferred_read_replica(
        broker.config.replica_selector_class,
        client_rack,
        rack_of(broker.node_id).as_deref(),
        fetch_offset,
        &followers,
    )
}

/// One pass over the wanted partitions: the response, its record bytes, and whether any
/// partition had an error or a redirect (which answers at once, as Kafka does).
fn read_once(
    topics: &[WantedTopic],
    max_bytes: usize,
    version: i16,
    throttle: Option<(&ReplicationThrottle, u64)>,
) -> (FetchResponse, usize, bool) {
    let now_ms = crate::log::now_ms().max(0) as u64;
    let mut total = 0usize;
    let mut errors = false;
    let responses = topics
        .iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let base = PartitionData::default()
                        .with_partition_index(p.index)
                        .with_aborted_transactions(
                            (p.limit == ReadLimit::LastStable).then(Vec::new),
                        );
                    let log = match &p.log {
                        Ok(log) => log,
                        Err(e) => {
                            errors = true;
                            return base
                                .with_error_code(e.code())
                                .with_high_watermark(-1)
                                .with_last_stable_offset(-1)
                                .with_log_start_offset(-1);
                        }
                    };
                    if let Err(e) = log.check_leader_epoch(p.leader_epoch) {
                        errors = true;
                        return base.with_error_code(e.code()).with_high_watermark(-1);
                    }
                    if let Some(follower) = p.redirect {
                        // No records: the consumer fetches them from `follower` next.
                        errors = true;
                        return base
                            .with_preferred_read_replica(follower.into())
                            .with_high_watermark(log.high_watermark())
                            .with_last_stable_offset(log.last_stable_offset())
                            .with_log_start_offset(log.state().log_start_offset)
                            .with_records(Some(Default::default()));
                    }
                    let budget = max_bytes.saturating_sub(total);
                    let held =
                        p.throttled && throttle.is_some_and(|(t, rate)| t.exceeded(rate, now_ms));
                    if held || (budget == 0 && total > 0) {
                        let hw = log.high_watermark();
                        let start = log.state().log_start_offset;
                        return base
                            .with_high_watermark(hw)
                            .with_last_stable_offset(log.last_stable_offset())
                            .with_log_start_offset(start)
                            .with_records(Some(Default::default()));
                    }
                    match log.read_up_to(p.offset, p.max_bytes.min(budget).max(1), p.limit) {
                        Ok(r) => {
                            total += r.records.len();
                            if let (true, Some((t, rate))) = (p.throttled, throttle) {
                                t.record(rate, r.records.len(), now_ms);
                            }
                            let lso = log.last_stable_offset();
                            let mut out = base
                                .with_high_watermark(r.high_watermark)
                                .with_last_stable_offset(lso)
                                .with_log_start_offset(r.log_start_offset);
                            if p.limit == ReadLimit::LastStable && !r.records.is_empty() {
                                out = out.with_aborted_transactions(Some(
                                    log.aborted_between(p.offset, lso)
                                        .into_iter()
                                        .map(|a| {
                                            AbortedTransaction::default()
                                                .with_producer_id(a.producer_id.into())
                                                .with_first_offset(a.first_offset)
                                        })
                                        .collect(),
                                ));
                            }
                            out.with_records(Some(r.records))
                        }
                        Err(e) => {
                            errors = true;
                            let hw = log.high_watermark();
                            base.with_error_code(e.code())
                                .with_high_watermark(hw)
                                .with_last_stable_offset(log.last_stable_offset())
                                .with_log_start_offset(log.state().log_start_offset)
                        }
                    }
                })
                .collect();
            let mut r = FetchableTopicResponse::default().with_partitions(partitions);
            if version >= 13 {
                r = r.with_topic_id(t.topic_id);
            } else {
                r = r.with_topic(t.name.clone());
            }
            r
        })
        .collect();
    (
        FetchResponse::default().with_responses(responses),
        total,
        errors,
    )
}

/// The record bytes a fetch answer carries (what a consumer's byte-rate quota counts).
pub fn record_bytes(r: &FetchResponse) -> usize {
    r.responses
        .iter()
        .flat_map(|t| t.partitions.iter())
        .map(|p| p.records.as_ref().map_or(0, |b| b.len()))
        .sum()
}
