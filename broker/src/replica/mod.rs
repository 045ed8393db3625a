//! Replication, follower side: one fetcher task per leader broker pulls every partition this
//! broker follows from that leader with the Kafka Fetch request (carrying `replica_id`), the
//! same request and code path consumers use. Before fetching a partition at a new leader
//! epoch, the fetcher asks the leader where its last epoch ends (OffsetForLeaderEpoch,
//! KIP-101/279) and truncates whatever diverged.
//!
//! The leader side lives in [`crate::log::PartitionLog`] (follower progress, high watermark)
//! and [`isr`] (the ISR rules); `maintain_isr` in `lib.rs` sends ISR changes to the
//! controller.

pub mod isr;
pub mod selector;
pub mod throttle;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::{BrokerId, FetchRequest, OffsetForLeaderEpochRequest, TopicName};
use kafka_protocol::ResponseError;
use metadata_quorum::quorum::client::RemoteController;
use metadata_quorum::MetadataImage;
use parking_lot::Mutex;
use strom_client::Connection;
use strom_storage::TopicPartition;
use tokio::sync::Notify;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::error::LogError;
use crate::log::{LogManager, PartitionLog};
use throttle::Side;

/// Fetch and OffsetForLeaderEpoch versions the fetchers speak (topic ids in Fetch).
const FETCH_VERSION: i16 = 13;
/// How long a fetcher whose every partition is throttled waits before looking again.
const THROTTLE_PAUSE: Duration = Duration::from_millis(50);
const OFFSET_FOR_LEADER_EPOCH_VERSION: i16 = 4;
/// Bytes asked per partition and per fetch.
const PARTITION_MAX_BYTES: i32 = 8 << 20;
const FETCH_MAX_BYTES: i32 = 64 << 20;
/// Waits after errors: short for "the leader has not caught up with the metadata", longer
/// for "this broker's metadata is stale" and for connection failures.
const RETRY_SOON: Duration = Duration::from_millis(50);
const RETRY_LATER: Duration = Duration::from_millis(250);

/// Tuning of the fetchers.
#[derive(Debug, Clone)]
pub struct FetcherConfig {
    pub node_id: i32,
    /// How long a fetch parks at the leader when there is nothing new.
    pub max_wait: Duration,
    /// How this broker connects to the inter-broker listener of the others.
    pub security: strom_client::security::Security,
    /// The follower side's replication throttle (KIP-73), shared by every fetcher.
    pub throttle: Arc<throttle::ReplicationThrottle>,
}

/// One partition a fetcher pulls.
#[derive(Clone)]
struct Target {
    log: Arc<PartitionLog>,
    name: TopicName,
    leader_epoch: i32,
    /// Whether the divergence check for this leader epoch is done.
    truncated: bool,
    retry_at: Option<Instant>,
}

type Targets = Arc<Mutex<HashMap<TopicPartition, Target>>>;

struct Fetcher {
    targets: Targets,
    wake: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

/// Every fetcher of this broker, kept in step with the metadata image.
pub struct ReplicaManager {
    config: FetcherConfig,
    fetchers: Mutex<HashMap<i32, Fetcher>>,
}

impl ReplicaManager {
    pub fn new(config: FetcherConfig) -> Self {
        Self {
            config,
            fetchers: Mutex::new(HashMap::new()),
        }
    }

    /// Points fetchers at the leaders `image` names: a partition this broker follows is
    /// fetched from its leader (anew, truncation first, when leader or epoch changed); a
    /// partition it leads, or that has no leader, is fetched by no one.
    pub fn sync(
        &self,
        image: &MetadataImage,
        logs: &LogManager,
        controller: &Arc<RemoteController>,
    ) {
        let mut wanted: HashMap<i32, HashMap<TopicPartition, Target>> = HashMap::new();
        for log in logs.all() {
            // A log created from a newer image than this one: the sync of that image, which
            // follows, sets its fetcher (this image may not even make it a follower).
            if !log.known_to(image) {
                continue;
            }
            let tp = log.topic_partition();
            let Some(topic) = image.topic_by_id(&tp.topic_id) else {
                continue;
            };
            let Some(meta) = topic.partitions.get(tp.partition as usize) else {
                continue;
            };
            if meta.leader < 0
                || meta.leader == self.config.node_id
                || !meta.replicas.contains(&self.config.node_id)
            {
                continue;
            }
            wanted.entry(meta.leader).or_default().insert(
                tp,
                Target {
                    log,
                    name: TopicName(topic.name.clone().into()),
                    leader_epoch: meta.leader_epoch,
                    truncated: false,
                    retry_at: None,
                },
            );
        }
        let mut fetchers = self.fetchers.lock();
        for (leader, f) in fetchers.iter() {
            // A partition stays only while it follows the same leader at the same epoch.
            let keep = wanted.get(leader);
            f.targets.lock().retain(|tp, t| {
                keep.and_then(|k| k.get(tp))
                    .is_some_and(|w| w.leader_epoch == t.leader_epoch)
            });
        }
        for (leader, targets) in wanted {
            let f = fetchers.entry(leader).or_insert_with(|| {
                let targets: Targets = Arc::default();
                let wake = Arc::new(Notify::new());
                let task = tokio::spawn(fetch_loop(
                    self.config.clone(),
                    leader,
                    targets.clone(),
                    wake.clone(),
                    controller.clone(),
                ));
                info!(leader, "replica fetcher started");
                Fetcher {
                    targets,
                    wake,
                    task,
                }
            });
            let mut current = f.targets.lock();
            let mut added = false;
            for (tp, t) in targets {
                if let std::collections::hash_map::Entry::Vacant(slot) = current.entry(tp) {
                    debug!(%tp, leader, leader_epoch = t.leader_epoch, "following");
                    slot.insert(t);
                    added = true;
                }
            }
            drop(current);
            if added {
                f.wake.notify_one();
            }
        }
        fetchers.retain(|leader, f| {
            let idle = f.targets.lock().is_empty();
            if idle {
                f.task.abort();
                info!(leader, "replica fetcher stopped");
            }
            !idle
        });
    }

    /// Stops every fetcher.
    pub fn stop(&self) {
        for (_, f) in self.fetchers.lock().drain() {
            f.task.abort();
        }
    }
}

async fn fetch_loop(
    config: FetcherConfig,
    leader: i32,
    targets: Targets,
    wake: Arc<Notify>,
    controller: Arc<RemoteController>,
) {
    let mut conn: Option<Connection> = None;
    loop {
        let now = Instant::now();
        let mut ready: Vec<(TopicPartition, Target)> = targets
            .lock()
            .iter()
            .filter(|(_, t)| t.retry_at.is_none_or(|at| at <= now))
            .map(|(tp, t)| (*tp, t.clone()))
            .collect();
        if ready.is_empty() {
            let next = targets.lock().values().filter_map(|t| t.retry_at).min();
            let sleep = next.map_or(Duration::from_secs(1), |at| {
                at.saturating_duration_since(now)
            });
            let _ = tokio::time::timeout(sleep, wake.notified()).await;
            continue;
        }
        let c = match conn.as_mut() {
            Some(c) => c,
            None => match connect(&controller, leader, &config.security).await {
                Some(c) => conn.insert(c),
                None => {
                    tokio::time::sleep(RETRY_LATER).await;
                    continue;
                }
            },
        };
        // Replicas under the follower-side throttle (KIP-73) sit out while its rate is spent.
        let image = controller.image();
        let rate = throttle::rate(&image, config.node_id, Side::Follower);
        let throttled: HashSet<TopicPartition> = match rate {
            Some(_) => ready
                .iter()
                .filter(|(tp, t)| {
                    let node = config.node_id;
                    throttle::throttled(
                        &image,
                        t.name.as_str(),
                        tp.partition,
                        node,
                        node,
                        Side::Follower,
                    )
                })
                .map(|(tp, _)| *tp)
                .collect(),
            None => HashSet::new(),
        };
        let now_ms = crate::log::now_ms().max(0) as u64;
        if let Some(rate) = rate.filter(|_| !throttled.is_empty()) {
            if config.throttle.exceeded(rate, now_ms) {
                ready.retain(|(tp, _)| !throttled.contains(tp));
                if ready.is_empty() {
                    tokio::time::sleep(THROTTLE_PAUSE).await;
                    continue;
                }
            }
        }
        let result = match ready.iter().any(|(_, t)| !t.truncated) {
            true => truncate_diverged(c, &config, &targets, &ready).await,
            false => fetch_once(c, &config, &targets, &ready, &throttled)
                .await
                .map(|bytes| {
                    if let (Some(rate), true) = (rate, bytes > 0) {
                        config.throttle.record(rate, bytes, now_ms);
                    }
                }),
        };
        if let Err(e) = result {
            debug!(leader, error = %e, "replica fetch failed; reconnecting");
            conn = None;
            tokio::time::sleep(RETRY_LATER).await;
        }
    }
}

async fn connect(
    controller: &RemoteController,
    leader: i32,
    security: &strom_client::security::Security,
) -> Option<Connection> {
    let image = controller.image();
    let addr = image.brokers.get(&leader)?.inter_broker_addr()?;
    match tokio::time::timeout(Duration::from_secs(5), security.connect(&addr)).await {
        Ok(Ok(c)) => Some(c),
        Ok(Err(e)) => {
            debug!(leader, %addr, error = %e, "cannot reach the leader");
            None
        }
        Err(_) => {
            debug!(leader, %addr, "connecting to the leader timed out");
            None
        }
    }
}

fn update(targets: &Targets, tp: &TopicPartition, epoch: i32, f: impl FnOnce(&mut Target)) {
    if let Some(t) = targets.lock().get_mut(tp) {
        // The target may have been replaced for a newer epoch meanwhile.
        if t.leader_epoch == epoch {
            f(t);
        }
    }
}

fn retry(targets: &Targets, tp: &TopicPartition, epoch: i32, after: Duration) {
    update(targets, tp, epoch, |t| {
        t.retry_at = Some(Instant::now() + after)
    });
}

/// A follower write the log refused because this replica no longer follows `epoch` (the
/// leadership moved while the fetch was out): until the next sync replaces the target, it is
/// not fetched (and refused) again at once.
fn no_longer_following(targets: &Targets, tp: &TopicPartition, epoch: i32, e: &LogError) {
    debug!(%tp, leader_epoch = epoch, error = %e, "a follower write for a leadership that ended is dropped");
    retry(targets, tp, epoch, RETRY_SOON);
}

/// Reacts to a partition-level error from the leader.
fn on_error(targets: &Targets, tp: &TopicPartition, epoch: i32, code: i16) {
    let e = ResponseError::try_from_code(code);
    match e {
        // The leader has not applied the new epoch yet: ask again soon.
        Some(ResponseError::UnknownLeaderEpoch) => retry(targets, tp, epoch, RETRY_SOON),
        // This broker's metadata is behind, or the partition moved: the image will update
        // the target; until then, ask now and then.
        _ => {
            debug!(%tp, error = ?e, code, "replica fetch refused");
            retry(targets, tp, epoch, RETRY_LATER)
        }
    }
}

/// OffsetForLeaderEpoch for every partition not yet checked at its epoch, then truncation to
/// where the leader's log agrees with this one.
async fn truncate_diverged(
    conn: &mut Connection,
    config: &FetcherConfig,
    targets: &Targets,
    ready: &[(TopicPartition, Target)],
) -> Result<(), strom_client::ClientError> {
    let pending: Vec<&(TopicPartition, Target)> =
        ready.iter().filter(|(_, t)| !t.truncated).collect();
    let mut by_name: HashMap<&TopicName, Vec<OffsetForLeaderPartition>> = HashMap::new();
    for (tp, t) in &pending {
        by_name.entry(&t.name).or_default().push(
            OffsetForLeaderPartition::default()
                .with_partition(tp.partition as i32)
                .with_current_leader_epoch(t.leader_epoch)
                .with_leader_epoch(t.log.latest_epoch()),
        );
    }
    let req = OffsetForLeaderEpochRequest::default()
        .with_replica_id(BrokerId(config.node_id))
        .with_topics(
            by_name
                .into_iter()
                .map(|(name, partitions)| {
                    OffsetForLeaderTopic::default()
                        .with_topic(name.clone())
                        .with_partitions(partitions)
                })
                .collect(),
        );
    let resp = tokio::time::timeout(
        Duration::from_secs(10),
        conn.send(req, OFFSET_FOR_LEADER_EPOCH_VERSION),
    )
    .await
    .map_err(|_| strom_client::ClientError::Closed)??;
    for topic in resp.topics {
        for p in topic.partitions {
            let Some((tp, t)) = pending
                .iter()
                .find(|(tp, t)| t.name == topic.topic && tp.partition as i32 == p.partition)
            else {
                continue;
            };
            if p.error_code != 0 {
                on_error(targets, tp, t.leader_epoch, p.error_code);
                continue;
            }
            let log = &t.log;
            // KIP-279: truncate to where both logs end the largest epoch they share.
            let to = if p.leader_epoch < 0 || p.end_offset < 0 {
                log.high_watermark()
            } else {
                let (_, mine) = log.end_offset_for_epoch(p.leader_epoch);
                let mine = if mine < 0 { log.high_watermark() } else { mine };
                p.end_offset.min(mine)
            };
            match log.truncate_as_follower(to, t.leader_epoch) {
                Ok(()) => update(targets, tp, t.leader_epoch, |x| x.truncated = true),
                Err(e @ LogError::NotFollower { .. }) => {
                    no_longer_following(targets, tp, t.leader_epoch, &e)
                }
                Err(e) => {
                    warn!(%tp, error = %e, "truncation failed");
                    retry(targets, tp, t.leader_epoch, RETRY_LATER);
                }
            }
        }
    }
    Ok(())
}

/// One Fetch for every ready partition; appends what comes back. Returns the record bytes
/// received for the `throttled` partitions.
async fn fetch_once(
    conn: &mut Connection,
    config: &FetcherConfig,
    targets: &Targets,
    ready: &[(TopicPartition, Target)],
    throttled: &HashSet<TopicPartition>,
) -> Result<usize, strom_client::ClientError> {
    let mut by_topic: HashMap<uuid::Uuid, Vec<FetchPartition>> = HashMap::new();
    // Where each partition's fetch starts: its answer applies only at that log end.
    let mut sent: HashMap<TopicPartition, i64> = HashMap::new();
    for (tp, t) in ready {
        let state = t.log.state();
        sent.insert(*tp, state.log_end_offset);
        by_topic.entry(tp.topic_id).or_default().push(
            FetchPartition::default()
                .with_partition(tp.partition as i32)
                .with_current_leader_epoch(t.leader_epoch)
                .with_fetch_offset(state.log_end_offset)
                .with_last_fetched_epoch(t.log.latest_epoch())
                .with_log_start_offset(state.log_start_offset)
                .with_partition_max_bytes(PARTITION_MAX_BYTES),
        );
    }
    let req = FetchRequest::default()
        .with_replica_id(BrokerId(config.node_id))
        .with_max_wait_ms(config.max_wait.as_millis() as i32)
        .with_min_bytes(1)
        .with_max_bytes(FETCH_MAX_BYTES)
        .with_session_epoch(-1)
        .with_topics(
            by_topic
                .into_iter()
                .map(|(topic_id, partitions)| {
                    FetchTopic::default()
                        .with_topic_id(topic_id)
                        .with_partitions(partitions)
                })
                .collect(),
        );
    let resp = tokio::time::timeout(
        config.max_wait + Duration::from_secs(10),
        conn.send(req, FETCH_VERSION),
    )
    .await
    .map_err(|_| strom_client::ClientError::Closed)??;
    if resp.error_code != 0 {
        warn!(
            code = resp.error_code,
            "the leader refused this broker's fetch"
        );
        for (tp, t) in ready {
            retry(targets, tp, t.leader_epoch, Duration::from_secs(1));
        }
        return Ok(0);
    }
    let mut throttled_bytes = 0;
    for topic in resp.responses {
        for p in topic.partitions {
            let tp = TopicPartition::new(topic.topic_id, p.partition_index as u32);
            let Some((_, t)) = ready.iter().find(|(x, _)| *x == tp) else {
                continue;
            };
            if throttled.contains(&tp) {
                throttled_bytes += p.records.as_ref().map_or(0, |r| r.len());
            }
            let Some(&from) = sent.get(&tp) else {
                continue;
            };
            apply_fetched(targets, &tp, t, from, p);
        }
    }
    Ok(throttled_bytes)
}

fn apply_fetched(
    targets: &Targets,
    tp: &TopicPartition,
    t: &Target,
    from: i64,
    p: kafka_protocol::messages::fetch_response::PartitionData,
) {
    let log = &t.log;
    // An answer from a leader this replica no longer follows (the partition moved to
    // another fetcher, or to a newer epoch, while the fetch was out), or for a log another
    // fetcher has truncated or extended since, says nothing about the log as it is now.
    let current = targets
        .lock()
        .get(tp)
        .is_some_and(|x| x.leader_epoch == t.leader_epoch);
    if !current || log.log_end_offset() != from {
        debug!(%tp, leader_epoch = t.leader_epoch, from, "a stale fetch answer is dropped");
        return;
    }
    if p.error_code == ResponseError::OffsetOutOfRange.code() {
        let end = log.log_end_offset();
        if end < p.log_start_offset {
            // Retention at the leader removed what this replica would fetch next.
            match log.truncate_fully_and_start_at(p.log_start_offset, t.leader_epoch) {
                Ok(()) => {}
                Err(e @ LogError::NotFollower { .. }) => {
                    no_longer_following(targets, tp, t.leader_epoch, &e)
                }
                Err(e) => {
                    warn!(%tp, error = %e, "could not restart the log");
                    retry(targets, tp, t.leader_epoch, RETRY_LATER);
                }
            }
        } else {
            // Past the leader's end: diverged; check again.
            update(targets, tp, t.leader_epoch, |x| x.truncated = false);
        }
        return;
    }
    if p.error_code != 0 {
        on_error(targets, tp, t.leader_epoch, p.error_code);
        return;
    }
    let records: Bytes = p.records.unwrap_or_default();
    if !records.is_empty() {
        if let Err(e) = log.append_replicated_at(&records, from, t.leader_epoch) {
            match e {
                LogError::NotFollower { .. } => {
                    no_longer_following(targets, tp, t.leader_epoch, &e);
                    return;
                }
                // The broker is stopping: the store took its last write.
                LogError::Storage {
                    source: strom_storage::StorageError::Closed,
                } => {
                    debug!(%tp, "replicated batches dropped: the log store is closed");
                    return;
                }
                _ => {}
            }
            warn!(%tp, error = %e, "replicated batches do not apply; checking divergence");
            update(targets, tp, t.leader_epoch, |x| x.truncated = false);
            return;
        }
    }
    log.follow_high_watermark(p.high_watermark);
    let start = log.state().log_start_offset;
    if p.log_start_offset > start && p.log_start_offset <= log.high_watermark() {
        if let Err(e) = log.delete_records_before(p.log_start_offset) {
            warn!(%tp, error = %e, "could not follow the leader's log start");
        }
    }
}
