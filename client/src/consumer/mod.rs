//! The consumer: reads partitions in order, either assigned by hand or shared with the other
//! members of a consumer group (the classic group protocol), with committed offsets kept in
//! the cluster.
//!
//! ```text
//!            poll / recv / stream
//!                    │
//!   ┌────────────────▼─────────────────┐   Join/Sync/Commit/OffsetFetch/Leave
//!   │ Consumer                         │──────────────────────────────▶ group task ─▶ coordinator
//!   │  partitions: position, buffer    │◀── rejoin / lost flags ──────  (heartbeats)
//!   │  one Fetch in flight per leader  │──────────────────────────────▶ partition leaders
//!   └──────────────────────────────────┘
//! ```
//!
//! Semantics follow the Java `KafkaConsumer`:
//! - A partition's *position* is the offset of the next record `poll` will return; it moves
//!   when records are returned, not when they are fetched. Commits store positions.
//! - A new partition starts at its committed offset (with a `group_id`), else where
//!   `auto_offset_reset` says; an out-of-range position is reset the same way.
//! - Rebalances happen inside `poll`, and only there, so the rebalance listener runs between
//!   the user's own calls: partitions are revoked (eager protocols: all, before rejoining;
//!   `cooperative-sticky`: only those that move) and then assigned. With auto-commit, the
//!   positions of revoked partitions are committed first.
//! - A member that does not poll within `max_poll_interval` leaves the group; its partitions
//!   are then *lost* (`on_partitions_lost`), not revoked, and it rejoins at its next poll.
//!
//! # Examples
//!
//! ```no_run
//! # async fn demo() -> Result<(), strom_client::consumer::ConsumerError> {
//! use std::time::Duration;
//! use strom_client::consumer::{Consumer, ConsumerConfig, OffsetReset};
//!
//! let mut config = ConsumerConfig::new("127.0.0.1:9092");
//! config.group_id = Some("billing".into());
//! config.auto_offset_reset = OffsetReset::Earliest;
//! config.enable_auto_commit = false;
//! let mut consumer = Consumer::new(config)?;
//! consumer.subscribe(&["orders"])?;
//! loop {
//!     let records = consumer.poll(Duration::from_secs(1)).await?;
//!     for r in &records {
//!         println!("{}-{}@{}: {:?}", r.topic, r.partition, r.offset, r.value);
//!     }
//!     if !records.is_empty() {
//!         consumer.commit_sync().await?;
//!     }
//! #   break;
//! }
//! consumer.close().await;
//! # Ok(()) }
//! ```
//!
//! Or as a `Stream`:
//!
//! ```no_run
//! # async fn demo(mut consumer: strom_client::consumer::Consumer) {
//! use futures::StreamExt;
//! let mut records = consumer.stream();
//! while let Some(Ok(r)) = records.next().await {
//!     println!("{}", r.offset);
//! }
//! # }
//! ```

pub mod assignor;
mod fetcher;
mod group;

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use futures::future::BoxFuture;
use futures::stream::{BoxStream, FuturesUnordered, StreamExt};
use futures::FutureExt;
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedPartitions;
use kafka_protocol::messages::consumer_protocol_subscription::TopicPartition as OwnedPartitions;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{
    BrokerId, ConsumerProtocolAssignment, ConsumerProtocolSubscription, ListOffsetsRequest,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::ResponseError;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::{debug, info, warn};

pub use assignor::{Assignor, MemberSubscription};
use fetcher::{FetchLimits, FetchTarget, Fetched};
use group::{Group, GroupSettings, Joined};

use crate::cluster::{topic_name, ClusterClient};
use crate::{BrokerError, ClientError, TopicPartition};

/// Where a partition without a usable committed offset starts (`auto.offset.reset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetReset {
    /// The log start: everything still retained.
    Earliest,
    /// The log end: only what is written from now on (Kafka's default).
    Latest,
    /// Fail with [`ConsumerError::NoOffset`] instead.
    None,
}

/// Consumer settings, with Kafka's names and defaults.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// `bootstrap.servers`: `host:port[,host:port...]`.
    pub bootstrap: String,
    /// `group.id`: needed to subscribe and to commit.
    pub group_id: Option<String>,
    /// `group.instance.id`: a static member (KIP-345) keeps its partitions across restarts
    /// within the session timeout, and does not leave the group on close.
    pub group_instance_id: Option<String>,
    /// `auto.offset.reset`.
    pub auto_offset_reset: OffsetReset,
    /// `enable.auto.commit`: positions are committed every `auto_commit_interval` from
    /// `poll`, before partitions are revoked, and on close.
    pub enable_auto_commit: bool,
    /// `auto.commit.interval.ms`.
    pub auto_commit_interval: Duration,
    /// `session.timeout.ms`: a member silent this long is removed by the coordinator.
    pub session_timeout: Duration,
    /// `heartbeat.interval.ms`.
    pub heartbeat_interval: Duration,
    /// `max.poll.interval.ms`: also how long the group waits for members to rejoin.
    pub max_poll_interval: Duration,
    /// `partition.assignment.strategy`, in order of preference. The rebalance is
    /// cooperative only if every one listed is.
    pub assignors: Vec<Assignor>,
    /// `max.poll.records`.
    pub max_poll_records: usize,
    /// `fetch.max.wait.ms`.
    pub fetch_max_wait: Duration,
    /// `fetch.min.bytes`.
    pub fetch_min_bytes: i32,
    /// `fetch.max.bytes`.
    pub fetch_max_bytes: i32,
    /// `max.partition.fetch.bytes`.
    pub max_partition_fetch_bytes: i32,
    /// `request.timeout.ms`.
    pub request_timeout: Duration,
    /// `retry.backoff.ms`.
    pub retry_backoff: Duration,
    /// `metadata.max.age.ms`: how often the group leader checks whether subscribed topics
    /// gained partitions (which rebalances the group).
    pub metadata_max_age: Duration,
}

impl ConsumerConfig {
    pub fn new(bootstrap: impl Into<String>) -> Self {
        Self {
            bootstrap: bootstrap.into(),
            group_id: None,
            group_instance_id: None,
            auto_offset_reset: OffsetReset::Latest,
            enable_auto_commit: true,
            auto_commit_interval: Duration::from_secs(5),
            session_timeout: Duration::from_secs(45),
            heartbeat_interval: Duration::from_secs(3),
            max_poll_interval: Duration::from_secs(300),
            assignors: vec![Assignor::Range, Assignor::CooperativeSticky],
            max_poll_records: 500,
            fetch_max_wait: Duration::from_millis(500),
            fetch_min_bytes: 1,
            fetch_max_bytes: 50 << 20,
            max_partition_fetch_bytes: 1 << 20,
            request_timeout: Duration::from_secs(30),
            retry_backoff: Duration::from_millis(100),
            metadata_max_age: Duration::from_secs(300),
        }
    }

    /// Checks the settings against each other, as the Java client does at construction.
    pub fn validate(&self) -> Result<(), ConsumerError> {
        let bad = |m: &str| Err(ConsumerError::Config(m.to_string()));
        if self.bootstrap.split(',').all(|s| s.trim().is_empty()) {
            return bad("bootstrap servers are empty");
        }
        if self.group_id.as_deref() == Some("") {
            return bad("group.id is empty");
        }
        if self.heartbeat_interval >= self.session_timeout {
            return bad("heartbeat.interval.ms must be lower than session.timeout.ms");
        }
        if self.assignors.is_empty() {
            return bad("partition.assignment.strategy is empty");
        }
        if self.max_poll_records == 0 {
            return bad("max.poll.records must be at least 1");
        }
        if self.group_instance_id.is_some() && self.group_id.is_none() {
            return bad("group.instance.id needs a group.id");
        }
        Ok(())
    }
}

/// A record as consumed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRecord {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// Milliseconds since the epoch (create time).
    pub timestamp: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(String, Option<Bytes>)>,
    /// The leader epoch its batch was written in.
    pub leader_epoch: i32,
}

/// A committed position and its optional metadata string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetAndMetadata {
    pub offset: i64,
    pub metadata: Option<String>,
}

impl OffsetAndMetadata {
    pub fn new(offset: i64) -> Self {
        Self {
            offset,
            metadata: None,
        }
    }
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ConsumerError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("cannot reach the cluster: {0}")]
    Connection(String),
    #[error("the broker answered {0}")]
    Broker(BrokerError),
    #[error("topic '{0}' does not exist")]
    UnknownTopic(String),
    #[error("{0} is not assigned to this consumer")]
    NotAssigned(TopicPartition),
    #[error("no committed offset for {0} and auto.offset.reset is none")]
    NoOffset(TopicPartition),
    #[error("offset {offset} is out of range for {tp} and auto.offset.reset is none")]
    OffsetOutOfRange { tp: TopicPartition, offset: i64 },
    #[error("the commit failed because the group rebalanced ({0}); the partitions may now belong to another member")]
    CommitFailed(String),
    /// Inside the crate: the group must be joined again.
    #[error("the group is rebalancing ({0})")]
    Rebalance(String),
    #[error("timed out: {0}")]
    Timeout(String),
    #[error("malformed data from the broker: {0}")]
    Decode(String),
    #[error("the consumer is closed")]
    Closed,
}

impl From<ClientError> for ConsumerError {
    fn from(e: ClientError) -> Self {
        ConsumerError::Connection(e.to_string())
    }
}

/// What the rebalance listener may do while it runs: read positions, commit, seek.
pub struct RebalanceContext {
    positions: BTreeMap<TopicPartition, i64>,
    commits: Vec<(TopicPartition, OffsetAndMetadata)>,
    seeks: Vec<(TopicPartition, i64)>,
}

impl RebalanceContext {
    fn new(positions: BTreeMap<TopicPartition, i64>) -> Self {
        Self {
            positions,
            commits: Vec::new(),
            seeks: Vec::new(),
        }
    }

    /// The position of a partition this consumer holds, if known.
    pub fn position(&self, tp: &TopicPartition) -> Option<i64> {
        self.positions.get(tp).copied()
    }

    /// Commits `offset` for `tp` (synchronously, before the rebalance goes on). Ignored in
    /// `on_partitions_lost`: that generation is gone.
    pub fn commit(&mut self, tp: TopicPartition, offset: i64) {
        self.commits.push((tp, OffsetAndMetadata::new(offset)));
    }

    /// Starts `tp` at `offset` instead of its committed offset (in `on_partitions_assigned`).
    pub fn seek(&mut self, tp: TopicPartition, offset: i64) {
        self.seeks.push((tp, offset));
    }
}

/// Called from inside `poll` when the group's assignment changes (Java's
/// `ConsumerRebalanceListener`).
pub trait RebalanceListener: Send {
    /// Before `revoked` are taken away; their positions are still readable.
    fn on_partitions_revoked(&mut self, revoked: &[TopicPartition], ctx: &mut RebalanceContext) {
        let _ = (revoked, ctx);
    }
    /// After `assigned` were added, before anything is fetched from them.
    fn on_partitions_assigned(&mut self, assigned: &[TopicPartition], ctx: &mut RebalanceContext) {
        let _ = (assigned, ctx);
    }
    /// This member was dropped from the group (session expired, fenced, too slow to poll):
    /// `lost` may already belong to others. By default, as in Java, the revocation callback.
    fn on_partitions_lost(&mut self, lost: &[TopicPartition], ctx: &mut RebalanceContext) {
        self.on_partitions_revoked(lost, ctx)
    }
}

/// Resolves once a queued commit is acknowledged (or failed). Dropping it is fine: the
/// commit still goes out.
pub struct CommitFuture {
    rx: oneshot::Receiver<Result<(), ConsumerError>>,
}

impl std::future::Future for CommitFuture {
    type Output = Result<(), ConsumerError>;
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.rx)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(ConsumerError::Closed)))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Position {
    Known(i64),
    /// From the group's committed offset, else the reset policy.
    Committed,
    Reset(OffsetReset),
}

struct PartitionState {
    position: Position,
    /// Fetched, not yet returned, in order.
    buffer: VecDeque<ConsumerRecord>,
    /// Where the next fetch starts once `buffer` is drained.
    next_fetch: i64,
    in_flight: bool,
    high_watermark: Option<i64>,
}

impl PartitionState {
    fn new(position: Position) -> Self {
        Self {
            position,
            buffer: VecDeque::new(),
            next_fetch: 0,
            in_flight: false,
            high_watermark: None,
        }
    }

    fn known(&self) -> Option<i64> {
        match self.position {
            Position::Known(p) => Some(p),
            _ => None,
        }
    }
}

enum Mode {
    None,
    Assigned,
    Subscribed(Vec<String>),
}

/// This member's place in the group after the last rebalance.
struct Membership {
    generation: i32,
    member_id: String,
    leader: bool,
    /// Leader only: partition counts the assignment was computed from.
    partition_counts: BTreeMap<String, i32>,
}

/// An async Kafka consumer. Methods take `&mut self`: one task drives it, as with Java's.
pub struct Consumer {
    config: ConsumerConfig,
    cluster: ClusterClient,
    mode: Mode,
    partitions: BTreeMap<TopicPartition, PartitionState>,
    group: Option<Group>,
    membership: Option<Membership>,
    listener: Option<Box<dyn RebalanceListener>>,
    inflight: FuturesUnordered<BoxFuture<'static, Fetched>>,
    busy_brokers: HashSet<i32>,
    metadata_stale: bool,
    last_metadata_check: Instant,
    last_auto_commit: Instant,
    /// The auto-commit in flight and the positions it commits.
    auto_commit: Option<(CommitFuture, Vec<(TopicPartition, i64)>)>,
    committed_positions: BTreeMap<TopicPartition, i64>,
    rotate: usize,
    closed: bool,
}

impl Consumer {
    /// A consumer with nothing assigned yet. Connects lazily, at the first call that needs
    /// the cluster.
    pub fn new(config: ConsumerConfig) -> Result<Self, ConsumerError> {
        config.validate()?;
        let group = config.group_id.clone().map(|group_id| {
            Group::start(GroupSettings {
                group_id,
                instance_id: config.group_instance_id.clone(),
                bootstrap: config.bootstrap.clone(),
                session_timeout: config.session_timeout,
                rebalance_timeout: config.max_poll_interval,
                heartbeat_interval: config.heartbeat_interval,
                max_poll_interval: config.max_poll_interval,
                request_timeout: config.request_timeout,
                retry_backoff: config.retry_backoff,
            })
        });
        Ok(Self {
            cluster: ClusterClient::new(&config.bootstrap),
            config,
            mode: Mode::None,
            partitions: BTreeMap::new(),
            group,
            membership: None,
            listener: None,
            inflight: FuturesUnordered::new(),
            busy_brokers: HashSet::new(),
            metadata_stale: true,
            last_metadata_check: Instant::now(),
            last_auto_commit: Instant::now(),
            auto_commit: None,
            committed_positions: BTreeMap::new(),
            rotate: 0,
            closed: false,
        })
    }

    /// Calls `listener` on every rebalance from now on.
    pub fn set_rebalance_listener(&mut self, listener: impl RebalanceListener + 'static) {
        self.listener = Some(Box::new(listener));
    }

    /// Joins the group (at the next poll) to share `topics`' partitions with its other
    /// members. Needs a `group_id`.
    pub fn subscribe(&mut self, topics: &[&str]) -> Result<(), ConsumerError> {
        self.check_open()?;
        let Some(group) = &self.group else {
            return Err(ConsumerError::Config(
                "subscribe needs a group.id (or use assign)".into(),
            ));
        };
        if topics.is_empty() || topics.iter().any(|t| t.is_empty()) {
            return Err(ConsumerError::Config(
                "subscribe to at least one topic name".into(),
            ));
        }
        let mut topics: Vec<String> = topics.iter().map(|t| t.to_string()).collect();
        topics.sort();
        topics.dedup();
        if let Mode::Subscribed(current) = &self.mode {
            if *current == topics {
                return Ok(());
            }
        } else {
            self.partitions.clear();
        }
        group.flags.rejoin.store(true, Ordering::SeqCst);
        self.mode = Mode::Subscribed(topics);
        Ok(())
    }

    /// Reads exactly `partitions`, with no group membership (commits still go to the
    /// group's offsets when there is a `group_id`).
    pub async fn assign(&mut self, partitions: Vec<TopicPartition>) -> Result<(), ConsumerError> {
        self.check_open()?;
        if matches!(self.mode, Mode::Subscribed(_)) {
            self.unsubscribe().await;
        }
        let start = if self.group.is_some() {
            Position::Committed
        } else {
            Position::Reset(self.config.auto_offset_reset)
        };
        let wanted: BTreeSet<TopicPartition> = partitions.into_iter().collect();
        self.partitions.retain(|tp, _| wanted.contains(tp));
        for tp in wanted {
            self.partitions
                .entry(tp)
                .or_insert_with(|| PartitionState::new(start));
        }
        self.mode = Mode::Assigned;
        Ok(())
    }

    /// Leaves the group (revoking what it holds) or drops the manual assignment.
    pub async fn unsubscribe(&mut self) {
        if matches!(self.mode, Mode::Subscribed(_)) && self.membership.is_some() {
            let owned: Vec<TopicPartition> = self.partitions.keys().cloned().collect();
            self.revoke(&owned).await;
            if let Some(g) = &self.group {
                g.leave().await;
            }
        }
        self.membership = None;
        self.partitions.clear();
        self.mode = Mode::None;
    }

    /// The partitions this consumer reads now.
    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.partitions.keys().cloned().collect()
    }

    /// The group generation this member is in, if it has joined.
    pub fn generation(&self) -> Option<i32> {
        self.membership.as_ref().map(|m| m.generation)
    }

    /// This member's id in the group, if it has joined.
    pub fn member_id(&self) -> Option<&str> {
        self.membership.as_ref().map(|m| m.member_id.as_str())
    }

    /// Records from the assigned partitions: waits up to `timeout` for at least one, and
    /// returns at most `max_poll_records`. Rebalances, position lookups and auto-commits
    /// happen in here.
    pub async fn poll(&mut self, timeout: Duration) -> Result<Vec<ConsumerRecord>, ConsumerError> {
        self.poll_up_to(timeout, self.config.max_poll_records).await
    }

    /// `poll` returning at most `max` records.
    async fn poll_up_to(
        &mut self,
        timeout: Duration,
        max: usize,
    ) -> Result<Vec<ConsumerRecord>, ConsumerError> {
        self.check_open()?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(g) = &self.group {
                // Inside poll counts as polling, however long this one waits.
                g.flags.polled();
                if let Some(e) = g.flags.fatal() {
                    return Err(e);
                }
            }
            self.maybe_auto_commit();
            self.ensure_group().await?;
            self.resolve_positions().await?;
            let out = self.drain(max);
            if !out.is_empty() {
                return Ok(out);
            }
            if Instant::now() >= deadline {
                return Ok(out);
            }
            self.fetch_round(deadline).await?;
        }
    }

    /// The next record, waiting as long as it takes. Positions move one record at a time,
    /// so a commit between two `recv`s covers exactly what was handed out.
    pub async fn recv(&mut self) -> Result<ConsumerRecord, ConsumerError> {
        loop {
            if let Some(r) = self.poll_up_to(Duration::from_secs(1), 1).await?.pop() {
                return Ok(r);
            }
        }
    }

    /// Records as a `Stream` (errors included; it never ends by itself).
    pub fn stream(&mut self) -> BoxStream<'_, Result<ConsumerRecord, ConsumerError>> {
        futures::stream::unfold(self, |c| async move {
            let r = c.recv().await;
            Some((r, c))
        })
        .boxed()
    }

    /// Reads `tp` from `offset` next.
    pub fn seek(&mut self, tp: &TopicPartition, offset: i64) -> Result<(), ConsumerError> {
        self.set_position(tp, Position::Known(offset))
    }

    /// Reads `tp` from its log start next.
    pub fn seek_to_beginning(&mut self, tp: &TopicPartition) -> Result<(), ConsumerError> {
        self.set_position(tp, Position::Reset(OffsetReset::Earliest))
    }

    /// Reads `tp` from its log end next.
    pub fn seek_to_end(&mut self, tp: &TopicPartition) -> Result<(), ConsumerError> {
        self.set_position(tp, Position::Reset(OffsetReset::Latest))
    }

    fn set_position(
        &mut self,
        tp: &TopicPartition,
        position: Position,
    ) -> Result<(), ConsumerError> {
        let st = self
            .partitions
            .get_mut(tp)
            .ok_or_else(|| ConsumerError::NotAssigned(tp.clone()))?;
        st.position = position;
        st.buffer.clear();
        if let Position::Known(o) = position {
            st.next_fetch = o;
        }
        Ok(())
    }

    /// The offset of the next record `poll` returns for `tp` (looking it up if needed).
    pub async fn position(&mut self, tp: &TopicPartition) -> Result<i64, ConsumerError> {
        if !self.partitions.contains_key(tp) {
            return Err(ConsumerError::NotAssigned(tp.clone()));
        }
        self.resolve_positions().await?;
        self.partitions
            .get(tp)
            .and_then(PartitionState::known)
            .ok_or_else(|| ConsumerError::NotAssigned(tp.clone()))
    }

    /// The high watermark of `tp` from the last fetch answer.
    pub fn high_watermark(&self, tp: &TopicPartition) -> Option<i64> {
        self.partitions.get(tp)?.high_watermark
    }

    /// Whether every assigned partition has been read up to its high watermark (as of the
    /// last fetch): what `kcat -e` waits for.
    pub fn at_end(&self) -> bool {
        !self.partitions.is_empty()
            && self.partitions.values().all(|st| {
                st.buffer.is_empty()
                    && matches!((st.known(), st.high_watermark), (Some(p), Some(hw)) if p >= hw)
            })
    }

    /// Commits the positions of every assigned partition and waits for the answer.
    pub async fn commit_sync(&mut self) -> Result<(), ConsumerError> {
        let offsets = self.positions_to_commit();
        self.commit_offsets_sync(offsets).await
    }

    /// Commits the positions of every assigned partition without waiting.
    pub fn commit_async(&mut self) -> Result<CommitFuture, ConsumerError> {
        let offsets = self.positions_to_commit();
        self.commit_offsets_async(offsets)
    }

    /// Commits `offsets` (the offset of the next record to read, with optional metadata)
    /// and waits for the answer.
    pub async fn commit_offsets_sync(
        &mut self,
        offsets: Vec<(TopicPartition, OffsetAndMetadata)>,
    ) -> Result<(), ConsumerError> {
        let plain: Vec<(TopicPartition, i64)> = offsets
            .iter()
            .map(|(tp, o)| (tp.clone(), o.offset))
            .collect();
        self.commit_offsets_async(offsets)?.await?;
        self.committed_positions.extend(plain);
        Ok(())
    }

    /// Commits `offsets` without waiting; commits are sent in the order they are made.
    pub fn commit_offsets_async(
        &mut self,
        offsets: Vec<(TopicPartition, OffsetAndMetadata)>,
    ) -> Result<CommitFuture, ConsumerError> {
        self.check_open()?;
        let group = self
            .group
            .as_ref()
            .ok_or_else(|| ConsumerError::Config("committing offsets needs a group.id".into()))?;
        let as_member = self.membership.is_some() && matches!(self.mode, Mode::Subscribed(_));
        if offsets.is_empty() {
            let (tx, rx) = oneshot::channel();
            let _ = tx.send(Ok(()));
            return Ok(CommitFuture { rx });
        }
        Ok(CommitFuture {
            rx: group.commit(offsets, as_member),
        })
    }

    /// The group's committed offsets for `partitions` (those with none are absent).
    pub async fn committed(
        &mut self,
        partitions: &[TopicPartition],
    ) -> Result<BTreeMap<TopicPartition, OffsetAndMetadata>, ConsumerError> {
        let group = self
            .group
            .as_ref()
            .ok_or_else(|| ConsumerError::Config("committed offsets need a group.id".into()))?;
        group.committed(partitions.to_vec()).await
    }

    /// Commits (with auto-commit), revokes, leaves the group (a dynamic member), and stops.
    pub async fn close(mut self) {
        if self.closed {
            return;
        }
        match self.mode {
            Mode::Subscribed(_) if self.membership.is_some() => {
                let owned: Vec<TopicPartition> = self.partitions.keys().cloned().collect();
                self.revoke(&owned).await;
                if let Some(g) = &self.group {
                    g.leave().await;
                }
            }
            Mode::Assigned if self.config.enable_auto_commit && self.group.is_some() => {
                if let Err(e) = self.commit_sync().await {
                    warn!(error = %e, "auto-commit on close failed");
                }
            }
            _ => {}
        }
        self.closed = true;
    }

    fn check_open(&self) -> Result<(), ConsumerError> {
        if self.closed {
            Err(ConsumerError::Closed)
        } else {
            Ok(())
        }
    }

    fn positions(&self) -> BTreeMap<TopicPartition, i64> {
        self.partitions
            .iter()
            .filter_map(|(tp, st)| st.known().map(|p| (tp.clone(), p)))
            .collect()
    }

    fn positions_to_commit(&self) -> Vec<(TopicPartition, OffsetAndMetadata)> {
        self.positions()
            .into_iter()
            .map(|(tp, p)| (tp, OffsetAndMetadata::new(p)))
            .collect()
    }

    fn maybe_auto_commit(&mut self) {
        if !self.config.enable_auto_commit || self.group.is_none() {
            return;
        }
        if let Some((commit, offsets)) = &mut self.auto_commit {
            match commit.rx.try_recv() {
                Ok(Ok(())) => {
                    self.committed_positions.extend(offsets.drain(..));
                    self.auto_commit = None;
                }
                Ok(Err(e)) => {
                    warn!(error = %e, "auto-commit failed; the next one retries");
                    self.auto_commit = None;
                }
                Err(oneshot::error::TryRecvError::Empty) => return,
                Err(oneshot::error::TryRecvError::Closed) => self.auto_commit = None,
            }
        }
        if self.last_auto_commit.elapsed() < self.config.auto_commit_interval {
            return;
        }
        self.last_auto_commit = Instant::now();
        let changed: Vec<(TopicPartition, i64)> = self
            .positions()
            .into_iter()
            .filter(|(tp, p)| self.committed_positions.get(tp) != Some(p))
            .collect();
        if changed.is_empty() {
            return;
        }
        let offsets = changed
            .iter()
            .map(|(tp, p)| (tp.clone(), OffsetAndMetadata::new(*p)))
            .collect();
        if let Ok(f) = self.commit_offsets_async(offsets) {
            self.auto_commit = Some((f, changed));
        }
    }

    /// Commits (auto-commit) and tells the listener before `revoked` go; then drops them.
    async fn revoke(&mut self, revoked: &[TopicPartition]) {
        if revoked.is_empty() {
            return;
        }
        let positions: BTreeMap<TopicPartition, i64> = self
            .positions()
            .into_iter()
            .filter(|(tp, _)| revoked.contains(tp))
            .collect();
        if self.config.enable_auto_commit && !positions.is_empty() {
            let offsets = positions
                .iter()
                .map(|(tp, p)| (tp.clone(), OffsetAndMetadata::new(*p)))
                .collect();
            if let Err(e) = self.commit_offsets_sync(offsets).await {
                warn!(error = %e, "committing revoked partitions failed");
            }
        }
        let mut ctx = RebalanceContext::new(positions);
        if let Some(l) = self.listener.as_mut() {
            l.on_partitions_revoked(revoked, &mut ctx);
        }
        if !ctx.commits.is_empty() {
            if let Err(e) = self.commit_offsets_sync(ctx.commits).await {
                warn!(error = %e, "the rebalance listener's commit failed");
            }
        }
        info!(partitions = ?revoked, "partitions revoked");
        self.drop_partitions(revoked);
    }

    fn drop_partitions(&mut self, gone: &[TopicPartition]) {
        for tp in gone {
            self.partitions.remove(tp);
            self.committed_positions.remove(tp);
        }
    }

    /// Rejoins the group when it is rebalancing, this member was dropped, or (the leader)
    /// a subscribed topic's partition count changed.
    async fn ensure_group(&mut self) -> Result<(), ConsumerError> {
        let Mode::Subscribed(topics) = &self.mode else {
            return Ok(());
        };
        let topics = topics.clone();
        let Some(flags) = self.group.as_ref().map(|g| g.flags.clone()) else {
            return Ok(());
        };
        let mut rejoin = flags.rejoin.load(Ordering::SeqCst) || self.membership.is_none();
        if !rejoin && self.last_metadata_check.elapsed() >= self.config.metadata_max_age {
            self.last_metadata_check = Instant::now();
            if let Some(m) = &self.membership {
                if m.leader {
                    // Every topic any member subscribes to (the counts the assignment used)
                    // and this member's own.
                    let mut wanted: BTreeSet<&str> =
                        m.partition_counts.keys().map(String::as_str).collect();
                    wanted.extend(topics.iter().map(String::as_str));
                    let wanted: Vec<&str> = wanted.into_iter().collect();
                    if self.cluster.metadata(Some(&wanted)).await.is_ok() {
                        let changed = wanted.iter().any(|t| {
                            self.cluster.partition_count(t) != m.partition_counts.get(*t).copied()
                        });
                        if changed {
                            info!("subscribed topics changed their partitions: rebalancing");
                            rejoin = true;
                        }
                    }
                }
            }
        }
        if !rejoin {
            return Ok(());
        }
        let result = self.rebalance(&topics).await;
        if result.is_err() {
            // Whatever failed (a timeout, the leader's metadata lookup), the next poll tries
            // again rather than sit in a generation that never completed.
            flags.rejoin.store(true, Ordering::SeqCst);
        }
        result
    }

    fn cooperative(&self) -> bool {
        self.config.assignors.iter().all(|a| a.cooperative())
    }

    async fn rebalance(&mut self, topics: &[String]) -> Result<(), ConsumerError> {
        let Some(flags) = self.group.as_ref().map(|g| g.flags.clone()) else {
            return Ok(());
        };
        let owned: Vec<TopicPartition> = self.partitions.keys().cloned().collect();
        if !flags.lost.load(Ordering::SeqCst) && !self.cooperative() {
            self.revoke(&owned).await;
        }
        loop {
            // A generation lost (before, or during the last attempt) gives up what it held
            // before the next JoinGroup, which then claims nothing.
            if flags.lost.swap(false, Ordering::SeqCst) {
                let owned: Vec<TopicPartition> = self.partitions.keys().cloned().collect();
                self.lose(&owned);
            }
            flags.rejoin.store(false, Ordering::SeqCst);
            let owned: Vec<TopicPartition> = self.partitions.keys().cloned().collect();
            let generation = self.membership.as_ref().map_or(-1, |m| m.generation);
            let protocols = self.protocols(topics, &owned, generation)?;
            let group = self.group.as_ref().ok_or(ConsumerError::Closed)?;
            let joined = match group.join(protocols).await {
                Ok(j) => j,
                Err(ConsumerError::Rebalance(why)) => {
                    debug!(reason = %why, "join refused; joining again");
                    continue;
                }
                Err(e) => return Err(e),
            };
            let (assignments, counts) = if joined.leader == joined.member_id {
                self.assign_as_leader(&joined).await?
            } else {
                (Vec::new(), BTreeMap::new())
            };
            let group = self.group.as_ref().ok_or(ConsumerError::Closed)?;
            match group.sync(assignments).await {
                Ok(bytes) => {
                    let assigned = decode_assignment(&bytes)?;
                    self.membership = Some(Membership {
                        generation: joined.generation,
                        member_id: joined.member_id.clone(),
                        leader: joined.leader == joined.member_id,
                        partition_counts: counts,
                    });
                    self.last_metadata_check = Instant::now();
                    self.apply_assignment(assigned).await;
                    flags.polled();
                    return Ok(());
                }
                Err(ConsumerError::Rebalance(why)) => {
                    debug!(reason = %why, "sync interrupted by a rebalance; joining again");
                    continue;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The listener's `on_partitions_lost`, then the partitions are gone (nothing committed).
    fn lose(&mut self, lost: &[TopicPartition]) {
        if lost.is_empty() {
            return;
        }
        warn!(partitions = ?lost, "partitions lost: this member's generation expired");
        let mut ctx = RebalanceContext::new(self.positions());
        if let Some(l) = self.listener.as_mut() {
            l.on_partitions_lost(lost, &mut ctx);
        }
        self.membership = None;
        self.drop_partitions(lost);
    }

    async fn apply_assignment(&mut self, assigned: BTreeSet<TopicPartition>) {
        let owned: BTreeSet<TopicPartition> = self.partitions.keys().cloned().collect();
        let revoked: Vec<TopicPartition> = owned.difference(&assigned).cloned().collect();
        if !revoked.is_empty() {
            // Cooperative: give these up now, then rejoin so their new owner gets them.
            self.revoke(&revoked).await;
            if let Some(g) = &self.group {
                g.flags.rejoin.store(true, Ordering::SeqCst);
            }
        }
        let added: Vec<TopicPartition> = assigned.difference(&owned).cloned().collect();
        for tp in &added {
            self.partitions
                .insert(tp.clone(), PartitionState::new(Position::Committed));
        }
        info!(
            generation = self.generation().unwrap_or(-1),
            assigned = ?added,
            holding = self.partitions.len(),
            "partitions assigned"
        );
        let mut ctx = RebalanceContext::new(self.positions());
        if let Some(l) = self.listener.as_mut() {
            l.on_partitions_assigned(&added, &mut ctx);
        }
        for (tp, offset) in ctx.seeks {
            let _ = self.seek(&tp, offset);
        }
        if !ctx.commits.is_empty() {
            if let Err(e) = self.commit_offsets_sync(ctx.commits).await {
                warn!(error = %e, "the rebalance listener's commit failed");
            }
        }
    }

    /// JoinGroup protocols: each assignor with this member's subscription (v3: topics,
    /// owned partitions, generation).
    fn protocols(
        &self,
        topics: &[String],
        owned: &[TopicPartition],
        generation: i32,
    ) -> Result<Vec<(String, Bytes)>, ConsumerError> {
        let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for tp in owned {
            by_topic
                .entry(tp.topic.as_str())
                .or_default()
                .push(tp.partition);
        }
        let subscription = ConsumerProtocolSubscription::default()
            .with_topics(
                topics
                    .iter()
                    .map(|t| StrBytes::from_string(t.clone()))
                    .collect(),
            )
            .with_owned_partitions(
                by_topic
                    .into_iter()
                    .map(|(t, p)| {
                        OwnedPartitions::default()
                            .with_topic(topic_name(t))
                            .with_partitions(p)
                    })
                    .collect(),
            )
            .with_generation_id(generation);
        let mut buf = BytesMut::new();
        buf.put_i16(3);
        subscription
            .encode(&mut buf, 3)
            .map_err(|e| ConsumerError::Config(format!("cannot encode the subscription: {e}")))?;
        let metadata = buf.freeze();
        Ok(self
            .config
            .assignors
            .iter()
            .map(|a| (a.name().to_string(), metadata.clone()))
            .collect())
    }

    /// The leader's part: decode every member's subscription, look up the partitions, run
    /// the chosen assignor.
    async fn assign_as_leader(
        &mut self,
        joined: &Joined,
    ) -> Result<(Vec<(String, Bytes)>, BTreeMap<String, i32>), ConsumerError> {
        let assignor = Assignor::from_name(&joined.protocol).ok_or_else(|| {
            ConsumerError::Config(format!(
                "the group chose assignor '{}', which this consumer does not implement",
                joined.protocol
            ))
        })?;
        let members: Vec<MemberSubscription> = joined
            .members
            .iter()
            .map(|(id, instance, metadata)| decode_subscription(id, instance.clone(), metadata))
            .collect();
        let topics: BTreeSet<&str> = members
            .iter()
            .flat_map(|m| m.topics.iter().map(String::as_str))
            .collect();
        let topics: Vec<&str> = topics.into_iter().collect();
        self.cluster.metadata(Some(&topics)).await?;
        let counts: BTreeMap<String, i32> = topics
            .iter()
            .filter_map(|t| self.cluster.partition_count(t).map(|n| (t.to_string(), n)))
            .collect();
        let plan = assignor.assign(&members, &counts);
        info!(
            generation = joined.generation,
            assignor = assignor.name(),
            members = members.len(),
            "computed the group's assignment as leader"
        );
        let mut out = Vec::new();
        for (member, tps) in plan {
            let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
            for tp in &tps {
                by_topic
                    .entry(tp.topic.as_str())
                    .or_default()
                    .push(tp.partition);
            }
            let assignment = ConsumerProtocolAssignment::default().with_assigned_partitions(
                by_topic
                    .into_iter()
                    .map(|(t, p)| {
                        AssignedPartitions::default()
                            .with_topic(topic_name(t))
                            .with_partitions(p)
                    })
                    .collect(),
            );
            let mut buf = BytesMut::new();
            buf.put_i16(1);
            assignment
                .encode(&mut buf, 1)
                .map_err(|e| ConsumerError::Config(format!("cannot encode an assignment: {e}")))?;
            out.push((member, buf.freeze()));
        }
        Ok((out, counts))
    }

    /// Finds a position for every partition that lacks one: the committed offset, else the
    /// reset policy through ListOffsets at the leader.
    async fn resolve_positions(&mut self) -> Result<(), ConsumerError> {
        let want_committed: Vec<TopicPartition> = self
            .partitions
            .iter()
            .filter(|(_, st)| st.position == Position::Committed)
            .map(|(tp, _)| tp.clone())
            .collect();
        if !want_committed.is_empty() {
            let committed = match &self.group {
                Some(g) => g.committed(want_committed.clone()).await?,
                None => BTreeMap::new(),
            };
            for tp in want_committed {
                if let Some(st) = self.partitions.get_mut(&tp) {
                    if st.position != Position::Committed {
                        continue;
                    }
                    st.position = match committed.get(&tp) {
                        Some(o) => {
                            self.committed_positions.insert(tp.clone(), o.offset);
                            st.next_fetch = o.offset;
                            Position::Known(o.offset)
                        }
                        None => Position::Reset(self.config.auto_offset_reset),
                    };
                }
            }
        }
        let want_reset: Vec<(TopicPartition, OffsetReset)> = self
            .partitions
            .iter()
            .filter_map(|(tp, st)| match st.position {
                Position::Reset(r) => Some((tp.clone(), r)),
                _ => None,
            })
            .collect();
        if want_reset.is_empty() {
            return Ok(());
        }
        if let Some((tp, _)) = want_reset.iter().find(|(_, r)| *r == OffsetReset::None) {
            return Err(ConsumerError::NoOffset(tp.clone()));
        }
        self.refresh_metadata_for(want_reset.iter().map(|(tp, _)| tp.topic.as_str()))
            .await?;
        let mut by_leader: BTreeMap<i32, Vec<(TopicPartition, OffsetReset)>> = BTreeMap::new();
        for (tp, r) in want_reset {
            match self.cluster.leader(&tp.topic, tp.partition) {
                Some(l) if l.leader >= 0 => by_leader.entry(l.leader).or_default().push((tp, r)),
                _ => self.metadata_stale = true,
            }
        }
        for (leader, parts) in by_leader {
            let mut topics: Vec<ListOffsetsTopic> = Vec::new();
            for (tp, r) in &parts {
                let p = ListOffsetsPartition::default()
                    .with_partition_index(tp.partition)
                    .with_current_leader_epoch(-1)
                    .with_timestamp(if *r == OffsetReset::Earliest { -2 } else { -1 });
                match topics.iter_mut().find(|t| t.name.as_str() == tp.topic) {
                    Some(t) => t.partitions.push(p),
                    None => topics.push(
                        ListOffsetsTopic::default()
                            .with_name(topic_name(&tp.topic))
                            .with_partitions(vec![p]),
                    ),
                }
            }
            let req = ListOffsetsRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_isolation_level(0)
                .with_topics(topics);
            let answer = match self.cluster.broker(leader).await {
                Ok(conn) => conn.send(req, 7).await,
                Err(e) => Err(e),
            };
            let r = match answer {
                Ok(r) => r,
                Err(e) => {
                    debug!(broker = leader, error = %e, "ListOffsets failed; retrying");
                    self.cluster.drop_broker(leader);
                    self.metadata_stale = true;
                    continue;
                }
            };
            for t in &r.topics {
                for p in &t.partitions {
                    let tp = TopicPartition::new(t.name.as_str(), p.partition_index);
                    if p.error_code != 0 {
                        debug!(%tp, error = %crate::error_name(p.error_code), "ListOffsets refused");
                        self.metadata_stale = true;
                        continue;
                    }
                    if let Some(st) = self.partitions.get_mut(&tp) {
                        if matches!(st.position, Position::Reset(_)) {
                            st.position = Position::Known(p.offset);
                            st.next_fetch = p.offset;
                            st.buffer.clear();
                        }
                    }
                }
            }
        }
        if self.metadata_stale {
            tokio::time::sleep(self.config.retry_backoff).await;
        }
        Ok(())
    }

    /// Metadata for `topics` when it is stale or a partition has no known leader; a topic
    /// that does not exist is an error for a manual assignment, and waited for otherwise.
    async fn refresh_metadata_for<'a>(
        &mut self,
        topics: impl Iterator<Item = &'a str>,
    ) -> Result<(), ConsumerError> {
        let topics: BTreeSet<String> = topics.map(str::to_string).collect();
        let unknown = topics
            .iter()
            .any(|t| self.cluster.partition_count(t).is_none());
        if !self.metadata_stale && !unknown {
            return Ok(());
        }
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        match self.cluster.metadata(Some(&names)).await {
            Ok(md) => {
                self.metadata_stale = false;
                if matches!(self.mode, Mode::Assigned) {
                    if let Some(t) = md
                        .topics
                        .iter()
                        .find(|t| t.error_code == ResponseError::UnknownTopicOrPartition.code())
                    {
                        let name = t.name.as_ref().map(|n| n.to_string()).unwrap_or_default();
                        return Err(ConsumerError::UnknownTopic(name));
                    }
                }
                Ok(())
            }
            Err(e) => {
                debug!(error = %e, "metadata refresh failed");
                self.cluster.reset();
                tokio::time::sleep(self.config.retry_backoff).await;
                Ok(())
            }
        }
    }

    /// Sends a fetch to every leader with fetchable partitions and none in flight, then
    /// waits (until `deadline`) for one answer and takes in every answer that is ready.
    async fn fetch_round(&mut self, deadline: Instant) -> Result<(), ConsumerError> {
        let fetchable: Vec<TopicPartition> = self
            .partitions
            .iter()
            .filter(|(_, st)| st.known().is_some() && st.buffer.is_empty() && !st.in_flight)
            .map(|(tp, _)| tp.clone())
            .collect();
        if !fetchable.is_empty() {
            self.refresh_metadata_for(fetchable.iter().map(|tp| tp.topic.as_str()))
                .await?;
        }
        let mut by_leader: BTreeMap<i32, Vec<FetchTarget>> = BTreeMap::new();
        for tp in fetchable {
            let leader = self
                .cluster
                .leader(&tp.topic, tp.partition)
                .map_or(-1, |l| l.leader);
            if leader < 0 {
                self.metadata_stale = true;
                continue;
            }
            if let Some(offset) = self.partitions.get(&tp).and_then(PartitionState::known) {
                by_leader
                    .entry(leader)
                    .or_default()
                    .push(FetchTarget { tp, offset });
            }
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        let limits = FetchLimits {
            max_wait_ms: self.config.fetch_max_wait.min(remaining).as_millis() as i32,
            min_bytes: self.config.fetch_min_bytes,
            max_bytes: self.config.fetch_max_bytes,
            partition_max_bytes: self.config.max_partition_fetch_bytes,
        };
        for (broker, targets) in by_leader {
            if self.busy_brokers.contains(&broker) {
                continue;
            }
            let conn = match self.cluster.take(broker).await {
                Ok(c) => c,
                Err(e) => {
                    debug!(broker, error = %e, "cannot connect to the leader");
                    self.metadata_stale = true;
                    continue;
                }
            };
            for t in &targets {
                if let Some(st) = self.partitions.get_mut(&t.tp) {
                    st.in_flight = true;
                }
            }
            self.busy_brokers.insert(broker);
            self.inflight
                .push(fetcher::fetch(broker, conn, targets, limits).boxed());
        }
        if self.inflight.is_empty() {
            let pause = self
                .config
                .retry_backoff
                .min(deadline.saturating_duration_since(Instant::now()));
            tokio::time::sleep(pause).await;
            return Ok(());
        }
        let first = tokio::time::timeout_at(deadline, self.inflight.next()).await;
        if let Ok(Some(f)) = first {
            self.take_in(f)?;
        }
        while let Some(Some(f)) = self.inflight.next().now_or_never() {
            self.take_in(f)?;
        }
        Ok(())
    }

    /// Files one fetch answer: records into the buffers of partitions still at the position
    /// they were fetched from; errors mark metadata stale or reset positions.
    fn take_in(&mut self, f: Fetched) -> Result<(), ConsumerError> {
        self.busy_brokers.remove(&f.broker);
        for t in &f.targets {
            if let Some(st) = self.partitions.get_mut(&t.tp) {
                st.in_flight = false;
            }
        }
        match f.conn {
            Some(c) => self.cluster.put_back(f.broker, c),
            None => {
                self.cluster.drop_broker(f.broker);
                self.metadata_stale = true;
            }
        }
        let r = match f.result {
            Ok(r) => r,
            Err(e) => {
                debug!(broker = f.broker, error = %e, "fetch failed");
                return Ok(());
            }
        };
        if r.error_code != 0 {
            debug!(broker = f.broker, error = %crate::error_name(r.error_code), "fetch refused");
            self.metadata_stale = true;
            return Ok(());
        }
        for t in &r.responses {
            for p in &t.partitions {
                let tp = TopicPartition::new(t.topic.as_str(), p.partition_index);
                let Some(target) = f.targets.iter().find(|x| x.tp == tp) else {
                    continue;
                };
                let Some(st) = self.partitions.get_mut(&tp) else {
                    continue; // revoked while the fetch was out
                };
                if st.position != Position::Known(target.offset) || !st.buffer.is_empty() {
                    continue; // sought elsewhere meanwhile
                }
                let code = p.error_code;
                if code == 0 {
                    st.high_watermark = Some(p.high_watermark);
                    let Some(data) = p.records.as_ref().filter(|d| !d.is_empty()) else {
                        continue;
                    };
                    let (records, next) = fetcher::records(&tp, data, target.offset)
                        .map_err(ConsumerError::Decode)?;
                    st.next_fetch = next;
                    if records.is_empty() {
                        st.position = Position::Known(next.max(target.offset));
                    } else {
                        st.buffer.extend(records);
                    }
                } else if code == ResponseError::OffsetOutOfRange.code() {
                    let policy = self.config.auto_offset_reset;
                    if policy == OffsetReset::None {
                        return Err(ConsumerError::OffsetOutOfRange {
                            tp,
                            offset: target.offset,
                        });
                    }
                    info!(%tp, offset = target.offset, reset = ?policy, "offset out of range; resetting");
                    st.position = Position::Reset(policy);
                } else if retriable_fetch_error(code) {
                    debug!(%tp, error = %crate::error_name(code), "refreshing metadata");
                    self.metadata_stale = true;
                } else {
                    return Err(ConsumerError::Broker(BrokerError::new(code, None)));
                }
            }
        }
        Ok(())
    }

    /// Up to `max` buffered records, a partition at a time, starting at a different
    /// partition each call so none starves; positions move past what is returned.
    fn drain(&mut self, max: usize) -> Vec<ConsumerRecord> {
        let mut out = Vec::new();
        let mut states: Vec<&mut PartitionState> = self
            .partitions
            .values_mut()
            .filter(|st| !st.buffer.is_empty())
            .collect();
        if states.is_empty() {
            return out;
        }
        self.rotate = self.rotate.wrapping_add(1);
        let start = self.rotate % states.len();
        states.rotate_left(start);
        for st in states {
            if out.len() >= max {
                break;
            }
            while out.len() < max {
                let Some(r) = st.buffer.pop_front() else {
                    break;
                };
                st.position = Position::Known(r.offset + 1);
                out.push(r);
            }
            if st.buffer.is_empty() {
                if let Position::Known(p) = st.position {
                    st.position = Position::Known(p.max(st.next_fetch));
                }
            }
        }
        out
    }
}

fn retriable_fetch_error(code: i16) -> bool {
    [
        ResponseError::NotLeaderOrFollower,
        ResponseError::UnknownTopicOrPartition,
        ResponseError::LeaderNotAvailable,
        ResponseError::FencedLeaderEpoch,
        ResponseError::UnknownLeaderEpoch,
        ResponseError::KafkaStorageError,
        ResponseError::ReplicaNotAvailable,
        ResponseError::OffsetNotAvailable,
        ResponseError::NotCoordinator,
        ResponseError::RequestTimedOut,
    ]
    .iter()
    .any(|e| e.code() == code)
}

/// A member's subscription from its JoinGroup metadata; undecodable metadata subscribes to
/// nothing (that member gets no partitions rather than breaking the group).
fn decode_subscription(
    member_id: &str,
    instance_id: Option<String>,
    metadata: &Bytes,
) -> MemberSubscription {
    let empty = MemberSubscription {
        member_id: member_id.to_string(),
        group_instance_id: instance_id.clone(),
        topics: Vec::new(),
        owned: Vec::new(),
        generation: -1,
    };
    if metadata.len() < 2 {
        return empty;
    }
    let version = i16::from_be_bytes([metadata[0], metadata[1]]);
    let mut body = metadata.slice(2..);
    match ConsumerProtocolSubscription::decode(&mut body, version.clamp(0, 3)) {
        Ok(s) => MemberSubscription {
            member_id: member_id.to_string(),
            group_instance_id: instance_id,
            topics: s.topics.iter().map(|t| t.to_string()).collect(),
            owned: s
                .owned_partitions
                .iter()
                .flat_map(|tp| {
                    tp.partitions
                        .iter()
                        .map(move |p| TopicPartition::new(tp.topic.as_str(), *p))
                })
                .collect(),
            generation: if version >= 2 { s.generation_id } else { -1 },
        },
        Err(e) => {
            warn!(member = member_id, error = %e, "undecodable subscription");
            empty
        }
    }
}

/// The committed offsets in an OffsetFetch answer (single-group form): partitions with an
/// offset, without an error.
pub(crate) fn committed_offsets(
    r: &kafka_protocol::messages::OffsetFetchResponse,
) -> BTreeMap<TopicPartition, OffsetAndMetadata> {
    r.topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .filter(|p| p.error_code == 0 && p.committed_offset >= 0)
                .map(move |p| {
                    (
                        TopicPartition::new(t.name.as_str(), p.partition_index),
                        OffsetAndMetadata {
                            offset: p.committed_offset,
                            metadata: p.metadata.as_ref().map(|m| m.to_string()),
                        },
                    )
                })
        })
        .collect()
}

/// The partitions of a consumer-protocol assignment (any version); empty bytes are an empty
/// assignment.
pub(crate) fn decode_assignment(bytes: &Bytes) -> Result<BTreeSet<TopicPartition>, ConsumerError> {
    if bytes.len() < 2 {
        return Ok(BTreeSet::new()); // an empty assignment
    }
    let version = i16::from_be_bytes([bytes[0], bytes[1]]);
    let mut body = bytes.slice(2..);
    let a = ConsumerProtocolAssignment::decode(&mut body, version.clamp(0, 3))
        .map_err(|e| ConsumerError::Decode(format!("assignment: {e}")))?;
    Ok(a.assigned_partitions
        .iter()
        .flat_map(|tp| {
            tp.partitions
                .iter()
                .map(move |p| TopicPartition::new(tp.topic.as_str(), *p))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_validation_names_the_setting() {
        let mut c = ConsumerConfig::new("127.0.0.1:9092");
        assert!(c.validate().is_ok());
        c.heartbeat_interval = c.session_timeout;
        assert!(matches!(c.validate(), Err(ConsumerError::Config(m)) if m.contains("heartbeat")));
        let mut c = ConsumerConfig::new(" , ");
        assert!(c.validate().is_err());
        c.bootstrap = "x:1".into();
        c.group_instance_id = Some("i".into());
        assert!(c.validate().is_err(), "an instance id without a group");
    }

    #[tokio::test]
    async fn subscribe_needs_a_group_and_seek_needs_an_assignment() {
        let mut c = Consumer::new(ConsumerConfig::new("127.0.0.1:1")).expect("consumer");
        assert!(matches!(c.subscribe(&["t"]), Err(ConsumerError::Config(_))));
        let tp = TopicPartition::new("t", 0);
        assert_eq!(c.seek(&tp, 5), Err(ConsumerError::NotAssigned(tp.clone())));
        c.assign(vec![tp.clone()]).await.expect("assign");
        c.seek(&tp, 5).expect("seek");
        assert_eq!(c.position(&tp).await, Ok(5));
        assert!(matches!(c.commit_async(), Err(ConsumerError::Config(_))));
    }

    #[test]
    fn subscriptions_round_trip_through_the_join_metadata() {
        let mut config = ConsumerConfig::new("x:1");
        config.group_id = Some("g".into());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let _guard = rt.enter();
        let c = Consumer::new(config).expect("consumer");
        let protocols = c
            .protocols(
                &["a".into(), "b".into()],
                &[TopicPartition::new("a", 1), TopicPartition::new("a", 3)],
                7,
            )
            .expect("protocols");
        assert_eq!(
            protocols
                .iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>(),
            ["range", "cooperative-sticky"]
        );
        let m = decode_subscription("m1", None, &protocols[0].1);
        assert_eq!(m.topics, ["a", "b"]);
        assert_eq!(
            m.owned,
            [TopicPartition::new("a", 1), TopicPartition::new("a", 3)]
        );
        assert_eq!(m.generation, 7);
        let garbage = decode_subscription("m2", None, &Bytes::from_static(&[0, 1, 0xff]));
        assert!(garbage.topics.is_empty());
    }

    #[test]
    fn assignments_decode_and_an_empty_one_is_nothing() {
        assert!(decode_assignment(&Bytes::new()).expect("empty").is_empty());
        let a = ConsumerProtocolAssignment::default().with_assigned_partitions(vec![
            AssignedPartitions::default()
                .with_topic(topic_name("t"))
                .with_partitions(vec![0, 2]),
        ]);
        let mut buf = BytesMut::new();
        buf.put_i16(1);
        a.encode(&mut buf, 1).expect("encode");
        let got = decode_assignment(&buf.freeze()).expect("decode");
        assert_eq!(
            got.into_iter().collect::<Vec<_>>(),
            [TopicPartition::new("t", 0), TopicPartition::new("t", 2)]
        );
    }

    fn state_with(records: &[i64], next_fetch: i64) -> PartitionState {
        let mut st = PartitionState::new(Position::Known(
            records.first().copied().unwrap_or(next_fetch),
        ));
        st.next_fetch = next_fetch;
        st.buffer = records
            .iter()
            .map(|o| ConsumerRecord {
                topic: "t".into(),
                partition: 0,
                offset: *o,
                timestamp: 0,
                key: None,
                value: None,
                headers: Vec::new(),
                leader_epoch: 0,
            })
            .collect();
        st
    }

    #[tokio::test]
    async fn positions_move_as_records_are_returned_not_fetched() {
        let mut c = Consumer::new(ConsumerConfig::new("x:1")).expect("consumer");
        let tp = TopicPartition::new("t", 0);
        c.partitions
            .insert(tp.clone(), state_with(&[10, 11, 12, 14], 20));
        c.config.max_poll_records = 2;
        let first = c.drain(2);
        assert_eq!(first.iter().map(|r| r.offset).collect::<Vec<_>>(), [10, 11]);
        assert_eq!(c.positions()[&tp], 12);
        let second = c.drain(10);
        assert_eq!(
            second.iter().map(|r| r.offset).collect::<Vec<_>>(),
            [12, 14]
        );
        // The batch went on to offset 19 (compacted away): the next fetch starts at 20.
        assert_eq!(c.positions()[&tp], 20);
    }

    #[tokio::test]
    async fn drain_takes_turns_between_partitions() {
        let mut c = Consumer::new(ConsumerConfig::new("x:1")).expect("consumer");
        let a = TopicPartition::new("t", 0);
        let b = TopicPartition::new("t", 1);
        c.partitions.insert(a.clone(), state_with(&[0, 1, 2], 3));
        let mut sb = state_with(&[0, 1, 2], 3);
        for r in sb.buffer.iter_mut() {
            r.partition = 1;
        }
        c.partitions.insert(b.clone(), sb);
        let first = c.drain(3);
        let second = c.drain(3);
        assert_ne!(first[0].partition, second[0].partition);
    }

    #[tokio::test]
    async fn a_seek_drops_what_was_buffered() {
        let mut c = Consumer::new(ConsumerConfig::new("x:1")).expect("consumer");
        let tp = TopicPartition::new("t", 0);
        c.partitions.insert(tp.clone(), state_with(&[5, 6, 7], 8));
        c.seek(&tp, 2).expect("seek");
        assert!(c.drain(10).is_empty());
        assert_eq!(c.positions()[&tp], 2);
    }
}
