//! The consumer's side of the classic group protocol, as a task of its own.
//!
//! ```text
//!   Consumer::poll ──Join/Sync/Commit/Committed/Leave──▶ GroupTask ──▶ coordinator broker
//!        ▲                                                  │  heartbeat every interval
//!        └──── Flags: rejoin needed / partitions lost ◀─────┘  (and the poll-interval check)
//! ```
//!
//! The task owns the connection to the group's coordinator, the member id and generation,
//! and the heartbeat timer, so a consumer busy between polls stays in the group (as the Java
//! client's heartbeat thread does). It never runs user code: when a heartbeat or a commit
//! learns that the group is rebalancing, or that this member was dropped, it raises a flag,
//! and the next `poll` rejoins and calls the rebalance listener there. A consumer that does
//! not poll within `max.poll.interval.ms` leaves the group, as Java's does, so its partitions
//! go to members that make progress.
//!
//! Requests that meet NOT_COORDINATOR, COORDINATOR_NOT_AVAILABLE or
//! COORDINATOR_LOAD_IN_PROGRESS, or a dead connection, find the coordinator again and retry
//! until their deadline: a coordinator failover is a pause, not an error.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    GroupId, HeartbeatRequest, JoinGroupRequest, LeaveGroupRequest, OffsetCommitRequest,
    OffsetFetchRequest, SyncGroupRequest,
};
use kafka_protocol::protocol::{Request, StrBytes};
use kafka_protocol::ResponseError;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::{ConsumerError, OffsetAndMetadata};
use crate::cluster::{topic_name, ClusterClient, FindCoordinatorError};
use crate::{BrokerError, Connection, TopicPartition};

/// The timeouts of group membership, from the consumer's config.
#[derive(Debug, Clone)]
pub(crate) struct GroupSettings {
    pub group_id: String,
    pub instance_id: Option<String>,
    pub bootstrap: String,
    pub security: crate::security::Security,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub heartbeat_interval: Duration,
    pub max_poll_interval: Duration,
    pub request_timeout: Duration,
    pub retry_backoff: Duration,
    /// OffsetFetch waits for offsets an open transaction holds (read_committed).
    pub require_stable: bool,
}

/// What the task tells the consumer between calls.
#[derive(Debug, Default)]
pub(crate) struct Flags {
    /// The group is rebalancing (or this member must rejoin): the next poll joins.
    pub rejoin: AtomicBool,
    /// This member's generation is gone (expired, fenced, left for a slow poll): what it
    /// owned is lost, not revoked; it must not be committed.
    pub lost: AtomicBool,
    /// Last time the user polled, for `max.poll.interval.ms`.
    last_poll: std::sync::Mutex<Option<Instant>>,
    /// An error this member cannot recover from (another process took its
    /// group.instance.id): every poll returns it.
    fatal: std::sync::Mutex<Option<ConsumerError>>,
}

impl Flags {
    pub fn polled(&self) {
        *self.last_poll.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
    }

    pub fn fatal(&self) -> Option<ConsumerError> {
        self.fatal.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set_fatal(&self, e: ConsumerError) {
        *self.fatal.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
    }
}

/// The JoinGroup answer the consumer needs.
#[derive(Debug, Clone)]
pub(crate) struct Joined {
    pub member_id: String,
    pub generation: i32,
    pub protocol: String,
    pub leader: String,
    /// (member id, group instance id, subscription metadata); only the leader gets these.
    pub members: Vec<(String, Option<String>, Bytes)>,
}

type Reply<T> = oneshot::Sender<Result<T, ConsumerError>>;

enum Command {
    Join {
        protocols: Vec<(String, Bytes)>,
        reply: Reply<Joined>,
    },
    Sync {
        assignments: Vec<(String, Bytes)>,
        reply: Reply<Bytes>,
    },
    Commit {
        offsets: Vec<(TopicPartition, OffsetAndMetadata)>,
        /// As a group member (generation and member id), or as a standalone consumer.
        as_member: bool,
        reply: Reply<()>,
    },
    Committed {
        partitions: Vec<TopicPartition>,
        reply: Reply<BTreeMap<TopicPartition, OffsetAndMetadata>>,
    },
    Leave {
        reply: oneshot::Sender<()>,
    },
}

/// The consumer's handle on its group task.
pub(crate) struct Group {
    /// Unbounded: a send never waits, so commands (commits above all) reach the task in the
    /// order they were made. What is queued is bounded by the consumer's own calls.
    tx: mpsc::UnboundedSender<Command>,
    pub flags: Arc<Flags>,
}

impl Group {
    pub fn start(settings: GroupSettings) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let flags = Arc::new(Flags::default());
        let task = GroupTask {
            cluster: ClusterClient::with_security(&settings.bootstrap, settings.security.clone()),
            settings,
            coordinator: None,
            member_id: String::new(),
            generation: -1,
            protocol: None,
            stable: false,
            last_heartbeat: Instant::now(),
            flags: flags.clone(),
        };
        tokio::spawn(task.run(rx));
        Self { tx, flags }
    }

    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, ConsumerError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(make(reply))
            .map_err(|_| ConsumerError::Closed)?;
        rx.await.map_err(|_| ConsumerError::Closed)?
    }

    pub async fn join(&self, protocols: Vec<(String, Bytes)>) -> Result<Joined, ConsumerError> {
        self.call(|reply| Command::Join { protocols, reply }).await
    }

    pub async fn sync(&self, assignments: Vec<(String, Bytes)>) -> Result<Bytes, ConsumerError> {
        self.call(|reply| Command::Sync { assignments, reply })
            .await
    }

    /// Queues a commit; the receiver answers once the coordinator has. Commits are sent in
    /// the order they are queued.
    pub fn commit(
        &self,
        offsets: Vec<(TopicPartition, OffsetAndMetadata)>,
        as_member: bool,
    ) -> oneshot::Receiver<Result<(), ConsumerError>> {
        let (reply, rx) = oneshot::channel();
        // A stopped task drops the reply, which the receiver reads as Closed.
        let _ = self.tx.send(Command::Commit {
            offsets,
            as_member,
            reply,
        });
        rx
    }

    pub async fn committed(
        &self,
        partitions: Vec<TopicPartition>,
    ) -> Result<BTreeMap<TopicPartition, OffsetAndMetadata>, ConsumerError> {
        self.call(|reply| Command::Committed { partitions, reply })
            .await
    }

    pub async fn leave(&self) {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Command::Leave { reply }).is_ok() {
            let _ = rx.await;
        }
    }
}

struct GroupTask {
    settings: GroupSettings,
    cluster: ClusterClient,
    coordinator: Option<(i32, Connection)>,
    member_id: String,
    generation: i32,
    protocol: Option<String>,
    /// Between a successful SyncGroup and the next rebalance: heartbeats run.
    stable: bool,
    last_heartbeat: Instant,
    flags: Arc<Flags>,
}

/// What one attempt at a coordinator request came to.
enum Attempt<T> {
    Done(T),
    /// Find the coordinator again and retry (after the backoff).
    Retry(String),
}

fn coordinator_moved(code: i16) -> bool {
    [
        ResponseError::NotCoordinator,
        ResponseError::CoordinatorNotAvailable,
        ResponseError::CoordinatorLoadInProgress,
    ]
    .iter()
    .any(|e| e.code() == code)
}

fn is(code: i16, e: ResponseError) -> bool {
    code == e.code()
}

impl GroupTask {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Command>) {
        loop {
            let next_heartbeat = if self.stable {
                self.last_heartbeat + self.settings.heartbeat_interval
            } else {
                Instant::now() + Duration::from_secs(3600)
            };
            tokio::select! {
                cmd = rx.recv() => match cmd {
                    Some(cmd) => self.handle(cmd).await,
                    None => return,
                },
                _ = tokio::time::sleep_until(next_heartbeat) => self.heartbeat().await,
            }
        }
    }

    async fn handle(&mut self, cmd: Command) {
        match cmd {
            Command::Join { protocols, reply } => {
                let _ = reply.send(self.join(protocols).await);
            }
            Command::Sync { assignments, reply } => {
                let _ = reply.send(self.sync(assignments).await);
            }
            Command::Commit {
                offsets,
                as_member,
                reply,
            } => {
                let _ = reply.send(self.commit(offsets, as_member).await);
            }
            Command::Committed { partitions, reply } => {
                let _ = reply.send(self.committed(partitions).await);
            }
            Command::Leave { reply } => {
                self.leave("the consumer is closing").await;
                let _ = reply.send(());
            }
        }
    }

    fn group_id(&self) -> GroupId {
        GroupId(StrBytes::from_string(self.settings.group_id.clone()))
    }

    fn instance_id(&self) -> Option<StrBytes> {
        self.settings.instance_id.clone().map(StrBytes::from_string)
    }

    /// Another process holds this member's group.instance.id: as Java's
    /// FencedInstanceIdException, fatal (rejoining would fence the other in turn, forever).
    fn fenced(&mut self) -> ConsumerError {
        let e = ConsumerError::Broker(BrokerError::new(
            ResponseError::FencedInstanceId.code(),
            Some("another consumer joined with this group.instance.id"),
        ));
        warn!(group = %self.settings.group_id, instance = ?self.settings.instance_id, "fenced by another member with the same group.instance.id");
        self.stable = false;
        self.flags.set_fatal(e.clone());
        e
    }

    /// Forgets the generation (and the member id when `member_too`): what this member
    /// owned is lost.
    fn reset(&mut self, member_too: bool) {
        self.generation = -1;
        self.stable = false;
        if member_too {
            self.member_id.clear();
        }
        self.flags.lost.store(true, Ordering::SeqCst);
        self.flags.rejoin.store(true, Ordering::SeqCst);
    }

    /// Sends `request` to the coordinator (finding it first if need be) and waits at most
    /// `timeout` for the answer. A dead connection or a lookup failure is `Retry`.
    async fn send<R: Request>(
        &mut self,
        request: R,
        version: i16,
        timeout: Duration,
    ) -> Attempt<R::Response> {
        if self.coordinator.is_none() {
            match self.cluster.find_coordinator(&self.settings.group_id).await {
                Ok(node) => {
                    let Some(addr) = self.cluster.address(node).map(str::to_string) else {
                        return Attempt::Retry(format!("coordinator {node} has no address"));
                    };
                    match tokio::time::timeout(
                        Duration::from_secs(5),
                        self.settings.security.connect(&addr),
                    )
                    .await
                    {
                        Ok(Ok(c)) => {
                            debug!(group = %self.settings.group_id, node, "coordinator found");
                            self.coordinator = Some((node, c));
                        }
                        Ok(Err(e)) => return Attempt::Retry(e.to_string()),
                        Err(_) => return Attempt::Retry(format!("connecting to {addr} timed out")),
                    }
                }
                Err(FindCoordinatorError::Broker(e)) => return Attempt::Retry(e.to_string()),
                Err(FindCoordinatorError::Client(e)) => {
                    self.cluster.reset();
                    return Attempt::Retry(e.to_string());
                }
            }
        }
        let Some((_, conn)) = self.coordinator.as_mut() else {
            return Attempt::Retry("no coordinator".into());
        };
        match tokio::time::timeout(timeout, conn.send(request, version)).await {
            Ok(Ok(r)) => Attempt::Done(r),
            Ok(Err(e)) => {
                self.coordinator = None;
                Attempt::Retry(e.to_string())
            }
            Err(_) => {
                self.coordinator = None;
                Attempt::Retry("the coordinator did not answer in time".into())
            }
        }
    }

    /// Sends what `make` builds to the coordinator until the answer is not one to retry
    /// (`retry` names its error code: the coordinator moved or is loading, ...) or `deadline`
    /// passes, with the reason last seen. Attempts are spaced by the backoff; a coordinator
    /// that moved is looked up again.
    async fn call<R: Request>(
        &mut self,
        version: i16,
        wait: Duration,
        deadline: Instant,
        make: impl Fn(&Self) -> R,
        retry: impl Fn(&R::Response) -> Option<i16>,
    ) -> Result<R::Response, String> {
        let mut last = String::from("no answer");
        while Instant::now() < deadline {
            match self.send(make(self), version, wait).await {
                Attempt::Done(r) => match retry(&r) {
                    None => return Ok(r),
                    Some(code) => {
                        if coordinator_moved(code) {
                            self.coordinator = None;
                        }
                        last = crate::error_name(code);
                    }
                },
                Attempt::Retry(why) => last = why,
            }
            tokio::time::sleep(self.settings.retry_backoff).await;
        }
        Err(last)
    }

    fn join_request(&self, protocols: &[(String, Bytes)]) -> JoinGroupRequest {
        JoinGroupRequest::default()
            .with_group_id(self.group_id())
            .with_session_timeout_ms(self.settings.session_timeout.as_millis() as i32)
            .with_rebalance_timeout_ms(self.settings.rebalance_timeout.as_millis() as i32)
            .with_member_id(StrBytes::from_string(self.member_id.clone()))
            .with_group_instance_id(self.instance_id())
            .with_protocol_type(StrBytes::from_static_str("consumer"))
            .with_protocols(
                protocols
                    .iter()
                    .map(|(name, metadata)| {
                        JoinGroupRequestProtocol::default()
                            .with_name(StrBytes::from_string(name.clone()))
                            .with_metadata(metadata.clone())
                    })
                    .collect(),
            )
    }

    async fn join(&mut self, protocols: Vec<(String, Bytes)>) -> Result<Joined, ConsumerError> {
        self.stable = false;
        let deadline =
            Instant::now() + self.settings.rebalance_timeout + self.settings.request_timeout;
        // The broker holds a JoinGroup until the rebalance completes.
        let wait = self.settings.rebalance_timeout + Duration::from_secs(5);
        loop {
            let r = self
                .call(
                    7,
                    wait,
                    deadline,
                    |t| t.join_request(&protocols),
                    |r| {
                        let c = r.error_code;
                        (coordinator_moved(c) || is(c, ResponseError::RebalanceInProgress))
                            .then_some(c)
                    },
                )
                .await
                .map_err(|last| {
                    ConsumerError::Timeout(format!(
                        "joining group {}: {last}",
                        self.settings.group_id
                    ))
                })?;
            let code = r.error_code;
            if is(code, ResponseError::MemberIdRequired) {
                // KIP-394: the broker names our member id; join again with it.
                self.member_id = r.member_id.to_string();
                continue;
            }
            if is(code, ResponseError::UnknownMemberId)
                || is(code, ResponseError::IllegalGeneration)
            {
                // This member's generation is gone: what it owns is lost, and the consumer
                // must join again claiming nothing.
                self.reset(is(code, ResponseError::UnknownMemberId));
                return Err(ConsumerError::Rebalance(crate::error_name(code)));
            }
            if is(code, ResponseError::FencedInstanceId) {
                return Err(self.fenced());
            }
            if code != 0 {
                return Err(ConsumerError::Broker(BrokerError::new(code, None)));
            }
            self.member_id = r.member_id.to_string();
            self.generation = r.generation_id;
            self.protocol = r.protocol_name.as_ref().map(|p| p.to_string());
            info!(
                group = %self.settings.group_id,
                member = %self.member_id,
                generation = self.generation,
                protocol = self.protocol.as_deref().unwrap_or(""),
                leader = r.leader.as_str() == r.member_id.as_str(),
                "joined group"
            );
            return Ok(Joined {
                member_id: self.member_id.clone(),
                generation: self.generation,
                protocol: self.protocol.clone().unwrap_or_default(),
                leader: r.leader.to_string(),
                members: r
                    .members
                    .into_iter()
                    .map(|m| {
                        (
                            m.member_id.to_string(),
                            m.group_instance_id.map(|i| i.to_string()),
                            m.metadata,
                        )
                    })
                    .collect(),
            });
        }
    }

    async fn sync(&mut self, assignments: Vec<(String, Bytes)>) -> Result<Bytes, ConsumerError> {
        let req = SyncGroupRequest::default()
            .with_group_id(self.group_id())
            .with_generation_id(self.generation)
            .with_member_id(StrBytes::from_string(self.member_id.clone()))
            .with_group_instance_id(self.instance_id())
            .with_protocol_type(Some(StrBytes::from_static_str("consumer")))
            .with_protocol_name(self.protocol.clone().map(StrBytes::from_string))
            .with_assignments(
                assignments
                    .into_iter()
                    .map(|(member, assignment)| {
                        SyncGroupRequestAssignment::default()
                            .with_member_id(StrBytes::from_string(member))
                            .with_assignment(assignment)
                    })
                    .collect(),
            );
        let wait = self.settings.rebalance_timeout + Duration::from_secs(5);
        let r = match self.send(req, 5, wait).await {
            Attempt::Done(r) => r,
            // A new coordinator knows nothing of this generation: join again.
            Attempt::Retry(why) => return Err(ConsumerError::Rebalance(why)),
        };
        let code = r.error_code;
        if code == 0 {
            self.stable = true;
            self.last_heartbeat = Instant::now();
            return Ok(r.assignment);
        }
        if is(code, ResponseError::UnknownMemberId) || is(code, ResponseError::IllegalGeneration) {
            self.reset(is(code, ResponseError::UnknownMemberId));
        } else if is(code, ResponseError::FencedInstanceId) {
            return Err(self.fenced());
        } else if coordinator_moved(code) {
            self.coordinator = None;
        } else if !is(code, ResponseError::RebalanceInProgress) {
            // FENCED_INSTANCE_ID (another process has this instance id) and the like.
            return Err(ConsumerError::Broker(BrokerError::new(code, None)));
        }
        Err(ConsumerError::Rebalance(crate::error_name(code)))
    }

    async fn heartbeat(&mut self) {
        self.last_heartbeat = Instant::now();
        let idle = self
            .flags
            .last_poll
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map(|t| t.elapsed());
        if idle.is_some_and(|d| d > self.settings.max_poll_interval) {
            warn!(
                group = %self.settings.group_id,
                member = %self.member_id,
                max_poll_interval_ms = self.settings.max_poll_interval.as_millis() as u64,
                "no poll within max.poll.interval.ms: leaving the group so others take the partitions"
            );
            self.leave("max.poll.interval.ms expired").await;
            self.reset(true);
            return;
        }
        let req = HeartbeatRequest::default()
            .with_group_id(self.group_id())
            .with_generation_id(self.generation)
            .with_member_id(StrBytes::from_string(self.member_id.clone()))
            .with_group_instance_id(self.instance_id());
        let timeout = self.settings.heartbeat_interval.max(Duration::from_secs(3));
        let r = match self.send(req, 4, timeout).await {
            Attempt::Done(r) => r,
            Attempt::Retry(why) => {
                debug!(group = %self.settings.group_id, error = %why, "heartbeat failed; will retry");
                return;
            }
        };
        let code = r.error_code;
        if code == 0 {
            return;
        }
        debug!(group = %self.settings.group_id, error = %crate::error_name(code), "heartbeat answered");
        if is(code, ResponseError::RebalanceInProgress) {
            self.flags.rejoin.store(true, Ordering::SeqCst);
        } else if is(code, ResponseError::IllegalGeneration) {
            self.reset(false);
        } else if is(code, ResponseError::UnknownMemberId) {
            self.reset(true);
        } else if is(code, ResponseError::FencedInstanceId) {
            self.fenced();
        } else if coordinator_moved(code) {
            self.coordinator = None;
        }
    }

    async fn commit(
        &mut self,
        offsets: Vec<(TopicPartition, OffsetAndMetadata)>,
        as_member: bool,
    ) -> Result<(), ConsumerError> {
        let mut topics: BTreeMap<String, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
        for (tp, om) in &offsets {
            topics.entry(tp.topic.clone()).or_default().push(
                OffsetCommitRequestPartition::default()
                    .with_partition_index(tp.partition)
                    .with_committed_offset(om.offset)
                    .with_committed_leader_epoch(-1)
                    .with_committed_metadata(om.metadata.clone().map(StrBytes::from_string)),
            );
        }
        // A standalone commit (manual assignment) carries no generation or member.
        let (generation, member, instance) = if as_member {
            (self.generation, self.member_id.clone(), self.instance_id())
        } else {
            (-1, String::new(), None)
        };
        let make = |t: &Self| {
            OffsetCommitRequest::default()
                .with_group_id(t.group_id())
                .with_generation_id_or_member_epoch(generation)
                .with_member_id(StrBytes::from_string(member.clone()))
                .with_group_instance_id(instance.clone())
                .with_topics(
                    topics
                        .iter()
                        .map(|(name, parts)| {
                            OffsetCommitRequestTopic::default()
                                .with_name(topic_name(name))
                                .with_partitions(parts.clone())
                        })
                        .collect(),
                )
        };
        let first_error = |r: &kafka_protocol::messages::OffsetCommitResponse| {
            r.topics
                .iter()
                .flat_map(|t| t.partitions.iter())
                .map(|p| p.error_code)
                .find(|c| *c != 0)
                .unwrap_or(0)
        };
        let deadline = Instant::now() + self.settings.request_timeout;
        let wait = self.settings.request_timeout;
        let r = self
            .call(8, wait, deadline, make, |r| {
                let c = first_error(r);
                (coordinator_moved(c) || is(c, ResponseError::RequestTimedOut)).then_some(c)
            })
            .await
            .map_err(|last| ConsumerError::Timeout(format!("committing offsets: {last}")))?;
        let code = first_error(&r);
        if code == 0 {
            return Ok(());
        }
        if is(code, ResponseError::RebalanceInProgress) {
            self.flags.rejoin.store(true, Ordering::SeqCst);
            return Err(ConsumerError::CommitFailed(crate::error_name(code)));
        }
        if is(code, ResponseError::IllegalGeneration) || is(code, ResponseError::UnknownMemberId) {
            self.reset(is(code, ResponseError::UnknownMemberId));
            return Err(ConsumerError::CommitFailed(crate::error_name(code)));
        }
        if is(code, ResponseError::FencedInstanceId) {
            return Err(self.fenced());
        }
        Err(ConsumerError::Broker(BrokerError::new(code, None)))
    }

    async fn committed(
        &mut self,
        partitions: Vec<TopicPartition>,
    ) -> Result<BTreeMap<TopicPartition, OffsetAndMetadata>, ConsumerError> {
        let topics = crate::partitions_by_topic(&partitions);
        let make = |t: &Self| {
            OffsetFetchRequest::default()
                .with_group_id(t.group_id())
                .with_require_stable(t.settings.require_stable)
                .with_topics(Some(
                    topics
                        .iter()
                        .map(|(name, p)| {
                            OffsetFetchRequestTopic::default()
                                .with_name(topic_name(name))
                                .with_partition_indexes(p.clone())
                        })
                        .collect(),
                ))
        };
        let first_error = |r: &kafka_protocol::messages::OffsetFetchResponse| {
            if r.error_code != 0 {
                return r.error_code;
            }
            r.topics
                .iter()
                .flat_map(|t| t.partitions.iter())
                .map(|p| p.error_code)
                .find(|c| *c != 0)
                .unwrap_or(0)
        };
        let deadline = Instant::now() + self.settings.request_timeout;
        let wait = self.settings.request_timeout;
        let r = self
            .call(7, wait, deadline, make, |r| {
                let c = first_error(r);
                (coordinator_moved(c) || is(c, ResponseError::UnstableOffsetCommit)).then_some(c)
            })
            .await
            .map_err(|last| {
                ConsumerError::Timeout(format!("fetching committed offsets: {last}"))
            })?;
        let code = first_error(&r);
        if code != 0 {
            return Err(ConsumerError::Broker(BrokerError::new(code, None)));
        }
        Ok(super::committed_offsets(&r))
    }

    /// LeaveGroup, once, best effort (a member that fails to leave expires by its session).
    /// A static member stays: its instance id keeps its place until the session expires.
    async fn leave(&mut self, reason: &str) {
        self.stable = false;
        if self.member_id.is_empty() || self.settings.instance_id.is_some() {
            return;
        }
        let req = LeaveGroupRequest::default()
            .with_group_id(self.group_id())
            .with_members(vec![MemberIdentity::default()
                .with_member_id(StrBytes::from_string(self.member_id.clone()))
                .with_reason(Some(StrBytes::from_string(reason.to_string())))]);
        match self.send(req, 5, Duration::from_secs(5)).await {
            Attempt::Done(r) => {
                debug!(group = %self.settings.group_id, error = %crate::error_name(r.error_code), "left group")
            }
            Attempt::Retry(why) => {
                debug!(group = %self.settings.group_id, error = %why, "could not leave the group")
            }
        }
        self.member_id.clear();
        self.generation = -1;
    }
}
