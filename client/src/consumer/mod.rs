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
//! Files: `reading` (positions, fetches, handing records out), `rebalance` (when to rejoin,
//! the leader's assignment, the listener), `group` (the membership task), `protocol` (the
//! consumer protocol's bytes), `assignor`, `fetcher` (one Fetch request and its batches).
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
mod protocol;
mod reading;
mod rebalance;

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::{BoxStream, FuturesUnordered, StreamExt};
use kafka_protocol::ResponseError;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::warn;

pub use assignor::{Assignor, CustomAssignor, MemberSubscription, PartitionAssignor};
use fetcher::Fetched;
use group::{Group, GroupSettings};
pub(crate) use protocol::{committed_offsets, decode_assignment};

use crate::cluster::ClusterClient;
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
    /// `isolation.level`: read_committed reads only committed transactional records, up to
    /// the last stable offset, and waits for committed offsets a transaction holds.
    pub isolation_level: IsolationLevel,
    /// A custom assignor, used instead of `assignors` (every member of the group must use
    /// it). Rebalances are then eager.
    pub custom_assignor: Option<CustomAssignor>,
    /// `security.protocol` and its TLS and SASL settings.
    pub security: crate::security::Security,
    /// `client.rack`: the rack this consumer runs in. A broker with a rack-aware replica
    /// selector may send it to an in-sync replica in that rack to read (KIP-392); it reads
    /// there until that replica fails it or `metadata.max.age.ms` passes, then asks the
    /// leader again.
    pub client_rack: Option<String>,
}

/// A group member's identity at a point in time (Java's `ConsumerGroupMetadata`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerGroupMetadata {
    pub group_id: String,
    /// -1 when not (yet) a member of a generation.
    pub generation_id: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
}

impl ConsumerGroupMetadata {
    /// Metadata naming only the group: the coordinator then checks no generation (a
    /// producer committing for a group it is not a member of).
    pub fn for_group(group_id: impl Into<String>) -> Self {
        Self {
            group_id: group_id.into(),
            generation_id: -1,
            member_id: String::new(),
            group_instance_id: None,
        }
    }
}

/// `isolation.level`, as Kafka's clients name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IsolationLevel {
    /// Every record below the high watermark, aborted transactions' included (the Java
    /// client's default).
    #[default]
    ReadUncommitted,
    /// Only records of committed transactions (and non-transactional ones), below the last
    /// stable offset.
    ReadCommitted,
}

impl IsolationLevel {
    /// The value on the wire (Fetch, ListOffsets).
    pub fn code(self) -> i8 {
        match self {
            IsolationLevel::ReadUncommitted => 0,
            IsolationLevel::ReadCommitted => 1,
        }
    }
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
            isolation_level: IsolationLevel::ReadUncommitted,
            client_rack: None,
            custom_assignor: None,
            security: crate::security::Security::plaintext(),
        }
    }

    /// Connections run TLS and SASL as `security` says.
    pub fn with_security(mut self, security: crate::security::Security) -> Self {
        self.security = security;
        self
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

/// The records of a fetched partition's record batches (no aborted transactions to drop):
/// what a share consumer's ShareFetch answer carries.
pub(crate) fn fetcher_records(
    tp: &TopicPartition,
    data: &bytes::Bytes,
) -> Result<Vec<ConsumerRecord>, String> {
    fetcher::records(tp, data, 0, &[]).map(|(records, _)| records)
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
    deferred: Vec<BoxFuture<'static, ()>>,
}

impl RebalanceContext {
    fn new(positions: BTreeMap<TopicPartition, i64>) -> Self {
        Self {
            positions,
            commits: Vec::new(),
            seeks: Vec::new(),
            deferred: Vec::new(),
        }
    }

    /// Work the rebalance waits for before it goes on: the listener's callbacks are
    /// synchronous, but giving partitions up cleanly can need I/O (flushing a producer,
    /// committing a transaction). `poll` awaits each deferred future, in order, before the
    /// partitions go (revoked, lost) or before fetching starts (assigned).
    pub fn defer(&mut self, work: impl std::future::Future<Output = ()> + Send + 'static) {
        self.deferred.push(Box::pin(work));
    }

    async fn run_deferred(&mut self) {
        for work in self.deferred.drain(..) {
            work.await;
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
    /// The replica the leader sent this partition's reads to (KIP-392), until when.
    read_replica: Option<(i32, Instant)>,
    /// Paused by the application: not fetched, and its buffered records not handed out.
    paused: bool,
}

impl PartitionState {
    fn new(position: Position) -> Self {
        Self {
            position,
            buffer: VecDeque::new(),
            next_fetch: 0,
            in_flight: false,
            high_watermark: None,
            read_replica: None,
            paused: false,
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
                security: config.security.clone(),
                session_timeout: config.session_timeout,
                rebalance_timeout: config.max_poll_interval,
                heartbeat_interval: config.heartbeat_interval,
                max_poll_interval: config.max_poll_interval,
                request_timeout: config.request_timeout,
                retry_backoff: config.retry_backoff,
                require_stable: config.isolation_level == IsolationLevel::ReadCommitted,
            })
        });
        Ok(Self {
            cluster: ClusterClient::with_security(&config.bootstrap, config.security.clone()),
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
        })
    }

    /// Calls `listener` on every rebalance from now on.
    pub fn set_rebalance_listener(&mut self, listener: impl RebalanceListener + 'static) {
        self.listener = Some(Box::new(listener));
    }

    /// Joins the group (at the next poll) to share `topics`' partitions with its other
    /// members. Needs a `group_id`.
    pub fn subscribe(&mut self, topics: &[&str]) -> Result<(), ConsumerError> {
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

    /// What a transactional producer sends with this consumer's offsets
    /// (`send_offsets_to_transaction`), so the group coordinator refuses them from a member
    /// a rebalance has replaced (KIP-447). None without a group.
    pub fn group_metadata(&self) -> Option<ConsumerGroupMetadata> {
        let group_id = self.config.group_id.clone()?;
        Some(ConsumerGroupMetadata {
            group_id,
            generation_id: self.generation().unwrap_or(-1),
            member_id: self.member_id().unwrap_or_default().to_string(),
            group_instance_id: self.config.group_instance_id.clone(),
        })
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

    /// Stops fetching `tps` and handing out their buffered records until
    /// [`resume`](Self::resume) (Java's `pause`); positions stay. A partition assigned anew
    /// starts unpaused.
    pub fn pause(&mut self, tps: &[TopicPartition]) {
        for tp in tps {
            if let Some(st) = self.partitions.get_mut(tp) {
                st.paused = true;
            }
        }
    }

    /// Fetches `tps` again.
    pub fn resume(&mut self, tps: &[TopicPartition]) {
        for tp in tps {
            if let Some(st) = self.partitions.get_mut(tp) {
                st.paused = false;
            }
        }
    }

    /// The assigned partitions that are paused.
    pub fn paused(&self) -> Vec<TopicPartition> {
        self.partitions
            .iter()
            .filter(|(_, st)| st.paused)
            .map(|(tp, _)| tp.clone())
            .collect()
    }

    /// How many records of `tp` this consumer has yet to hand out: the high watermark (the
    /// last stable offset under read_committed) of the last fetch answer less the position,
    /// as Java's `currentLag`. None until both are known.
    pub fn current_lag(&self, tp: &TopicPartition) -> Option<i64> {
        let st = self.partitions.get(tp)?;
        Some((st.high_watermark? - st.known()?).max(0))
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
    }

    fn positions(&self) -> BTreeMap<TopicPartition, i64> {
        self.partitions
            .iter()
            .filter_map(|(tp, st)| st.known().map(|p| (tp.clone(), p)))
            .collect()
    }

    fn positions_to_commit(&self) -> Vec<(TopicPartition, OffsetAndMetadata)> {
        as_offsets(self.positions())
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
        if let Ok(f) = self.commit_offsets_async(as_offsets(changed.clone())) {
            self.auto_commit = Some((f, changed));
        }
    }
}

/// Positions as offsets to commit (no metadata).
fn as_offsets(
    positions: impl IntoIterator<Item = (TopicPartition, i64)>,
) -> Vec<(TopicPartition, OffsetAndMetadata)> {
    positions
        .into_iter()
        .map(|(tp, p)| (tp, OffsetAndMetadata::new(p)))
        .collect()
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

#[cfg(test)]
mod tests;
