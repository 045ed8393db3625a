//! The share consumer (KIP-932, queues for Kafka): a member of a share group, which hands
//! each record to one member at a time, any number of members per partition, and takes
//! each record's acknowledgement (accept, release, reject) one by one.
//!
//! ```text
//!   membership task ──> ShareGroupHeartbeat every interval (coordinator: membership,
//!        │               assignment), started by the first poll
//!        ▼ assignment
//!   poll ──> ShareFetch per partition leader, in a share session (epoch 0 opens it, then
//!            1, 2, ...), carrying the acknowledgements of what earlier polls returned
//!   commit ─> ShareAcknowledge per leader    close ─> epoch -1 everywhere, then leave
//! ```
//!
//! Heartbeats run on a task of their own (as the Java client's background thread), so a
//! member that takes long over its records between polls stays in the group; its records'
//! acquisition locks still run out after `share.record.lock.duration.ms`. The task needs a
//! runtime thread to run on: work that blocks a current-thread runtime between polls
//! starves it (use `spawn_blocking`, or a multi-threaded runtime). There is no
//! `max.poll.interval.ms`: a member that stops polling keeps its place in the group (its
//! records still go back to the others as their locks run out) until it closes.
//!
//! With implicit acknowledgement (the default, Kafka's `share.acknowledgement.mode=implicit`)
//! everything a poll returned is accepted by the next poll, `commit` or `close`. With
//! explicit acknowledgement the application calls [`ShareConsumer::acknowledge`]; a record
//! it never acknowledges goes back to the group when its acquisition lock runs out.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafka_protocol::messages::share_acknowledge_request::{
    AcknowledgePartition, AcknowledgeTopic, AcknowledgementBatch as AckBatch,
};
use kafka_protocol::messages::share_fetch_request::{
    AcknowledgementBatch, FetchPartition, FetchTopic, ForgottenTopic,
};
use kafka_protocol::messages::{
    GroupId, ShareAcknowledgeRequest, ShareFetchRequest, ShareFetchResponse,
    ShareGroupHeartbeatRequest,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use tokio::sync::{oneshot, Notify};
use tokio::time::Instant;
use tracing::{debug, info, warn};
use uuid::Uuid;

use crate::cluster::{topic_name, ClusterClient};
use crate::consumer::ConsumerRecord;
use crate::{BrokerError, ClientError, TopicPartition};

/// How a record was processed (Kafka's AcknowledgeType).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcknowledgeType {
    /// Processed: never delivered again.
    Accept = 1,
    /// Not processed: delivered again (to any member) until the delivery limit.
    Release = 2,
    /// Cannot be processed: never delivered again.
    Reject = 3,
}

/// A record as a share group delivered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareRecord {
    pub record: ConsumerRecord,
    /// The topic's id (a topic deleted and made again under its name has another).
    pub topic_id: Uuid,
    /// 1 the first time the group hands it out, then one more each time.
    pub delivery_count: i16,
}

/// Share consumer settings, with Kafka's names and defaults.
#[derive(Debug, Clone)]
pub struct ShareConsumerConfig {
    /// `bootstrap.servers`.
    pub bootstrap: String,
    pub security: crate::security::Security,
    /// `group.id`.
    pub group_id: String,
    /// `share.acknowledgement.mode=explicit`: records are acknowledged by the application.
    pub explicit_acknowledgement: bool,
    /// `max.poll.records`: records a ShareFetch asks each leader for.
    pub max_poll_records: i32,
    /// `fetch.max.wait.ms`.
    pub fetch_max_wait: Duration,
    /// `fetch.max.bytes`.
    pub fetch_max_bytes: i32,
    /// `request.timeout.ms`: how long a request (and its connection) may take beyond what
    /// the broker is asked to wait.
    pub request_timeout: Duration,
}

impl ShareConsumerConfig {
    pub fn new(bootstrap: &str, group_id: &str) -> Self {
        Self {
            bootstrap: bootstrap.to_string(),
            security: crate::security::Security::plaintext(),
            group_id: group_id.to_string(),
            explicit_acknowledgement: false,
            max_poll_records: 500,
            fetch_max_wait: Duration::from_millis(500),
            fetch_max_bytes: 50 * 1024 * 1024,
            request_timeout: Duration::from_secs(30),
        }
    }

    pub fn with_security(mut self, security: crate::security::Security) -> Self {
        self.security = security;
        self
    }
}

/// Why a share consumer call failed.
#[derive(Debug, thiserror::Error)]
pub enum ShareConsumerError {
    #[error("{0}")]
    Client(#[from] ClientError),
    #[error("{0}")]
    Broker(BrokerError),
    #[error("{0}")]
    Usage(String),
}

impl From<BrokerError> for ShareConsumerError {
    fn from(e: BrokerError) -> Self {
        ShareConsumerError::Broker(e)
    }
}

/// A share session with one leader: the epoch its next request carries (0: none open) and
/// the partitions in it.
#[derive(Debug, Default)]
struct Session {
    epoch: i32,
    partitions: BTreeSet<(Uuid, i32)>,
}

/// (topic id, partition) → (offset, type), the acknowledgements not yet sent.
type Acks = BTreeMap<(Uuid, i32), BTreeMap<i64, AcknowledgeType>>;

/// What the membership task and the consumer share.
#[derive(Debug, Default)]
struct Membership {
    topics: Vec<String>,
    member_epoch: i32,
    assignment: BTreeSet<(Uuid, i32)>,
    /// A heartbeat refusal the application must hear of (the next poll returns it).
    failed: Option<BrokerError>,
}

/// The membership task's handle: what wakes it early (a new subscription) and how `close`
/// asks it to leave the group (and hears how that went).
struct MembershipTask {
    wake: Arc<Notify>,
    leave: oneshot::Sender<oneshot::Sender<Result<(), ShareConsumerError>>>,
    handle: tokio::task::JoinHandle<()>,
}

pub struct ShareConsumer {
    config: ShareConsumerConfig,
    cluster: ClusterClient,
    member_id: String,
    membership: Arc<Mutex<Membership>>,
    /// Started by the first poll (it needs the runtime).
    task: Option<MembershipTask>,
    /// The assignment as of the last poll.
    assignment: BTreeSet<(Uuid, i32)>,
    names: HashMap<Uuid, String>,
    sessions: HashMap<i32, Session>,
    pending: Acks,
    /// Records the last poll returned that are not acknowledged yet.
    unacknowledged: BTreeMap<(Uuid, i32), BTreeSet<i64>>,
    /// Acknowledgements that did not take: per record when no session could carry them,
    /// per partition when a broker refused a partition's (its lock had run out, most often).
    /// Their records come back when their locks run out.
    pub refused_acknowledgements: u64,
}

const NOT_COORDINATOR: i16 = 16;
const COORDINATOR_NOT_AVAILABLE: i16 = 15;
const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
const UNKNOWN_MEMBER_ID: i16 = 25;
const FENCED_MEMBER_EPOCH: i16 = 110;
const SHARE_SESSION_NOT_FOUND: i16 = 122;
const INVALID_SHARE_SESSION_EPOCH: i16 = 123;

impl ShareConsumer {
    pub fn new(config: ShareConsumerConfig) -> Result<Self, ShareConsumerError> {
        if config.group_id.is_empty() {
            return Err(ShareConsumerError::Usage("group.id is required".into()));
        }
        let cluster = ClusterClient::with_security(&config.bootstrap, config.security.clone());
        Ok(Self {
            config,
            cluster,
            // KIP-932 v1: the member makes up its own id and keeps it for its lifetime.
            member_id: Uuid::new_v4().simple().to_string(),
            membership: Arc::default(),
            task: None,
            assignment: BTreeSet::new(),
            names: HashMap::new(),
            sessions: HashMap::new(),
            pending: Acks::new(),
            unacknowledged: BTreeMap::new(),
            refused_acknowledgements: 0,
        })
    }

    /// Subscribes to `topics` (replacing any earlier subscription); the group's coordinator
    /// assigns their partitions (the heartbeat goes at once, or at the first poll).
    pub fn subscribe(&mut self, topics: &[&str]) {
        lock(&self.membership).topics = topics.iter().map(|t| t.to_string()).collect();
        if let Some(task) = &self.task {
            task.wake.notify_one();
        }
    }

    pub fn member_id(&self) -> &str {
        &self.member_id
    }

    /// The partitions the group assigned to this member.
    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.assignment
            .iter()
            .filter_map(|(id, p)| Some(TopicPartition::new(self.names.get(id)?.as_str(), *p)))
            .collect()
    }

    /// Acknowledges a record the last poll returned; sent with the next poll or commit.
    pub fn acknowledge(
        &mut self,
        record: &ShareRecord,
        kind: AcknowledgeType,
    ) -> Result<(), ShareConsumerError> {
        let key = (record.topic_id, record.record.partition);
        let held = self
            .unacknowledged
            .get_mut(&key)
            .is_some_and(|offsets| offsets.remove(&record.record.offset));
        if !held {
            return Err(ShareConsumerError::Usage(format!(
                "{}-{} offset {} is not a record of the last poll awaiting acknowledgement",
                record.record.topic, record.record.partition, record.record.offset
            )));
        }
        self.pending
            .entry(key)
            .or_default()
            .insert(record.record.offset, kind);
        Ok(())
    }

    /// Records for the subscription: one ShareFetch to each leader of an assigned partition
    /// (carrying the acknowledgements so far), waiting up to `timeout` for records. The
    /// first poll joins the group; heartbeats then go from a task of their own. A refusal
    /// of a heartbeat (an authorisation failure, say) is this call's error. In explicit
    /// mode every record of the last poll must be acknowledged first.
    pub async fn poll(
        &mut self,
        timeout: Duration,
    ) -> Result<Vec<ShareRecord>, ShareConsumerError> {
        if self.config.explicit_acknowledgement {
            let waiting: usize = self.unacknowledged.values().map(BTreeSet::len).sum();
            if waiting > 0 {
                return Err(ShareConsumerError::Usage(format!(
                    "{waiting} records of the last poll are not acknowledged"
                )));
            }
        }
        self.accept_implicitly();
        self.unacknowledged.clear();
        self.start_membership();
        let deadline = Instant::now() + timeout;
        loop {
            self.take_membership().await?;
            let started = Instant::now();
            let records = self.fetch(deadline).await?;
            if !records.is_empty() || Instant::now() >= deadline {
                for r in &records {
                    self.unacknowledged
                        .entry((r.topic_id, r.record.partition))
                        .or_default()
                        .insert(r.record.offset);
                }
                return Ok(records);
            }
            if self.assignment.is_empty() || started.elapsed() < Duration::from_millis(20) {
                // Nothing assigned yet, or no leader waited: not busily.
                tokio::time::sleep_until(deadline.min(Instant::now() + Duration::from_millis(100)))
                    .await;
            }
        }
    }

    /// Sends the acknowledgements so far (ShareAcknowledge to each leader) and waits for
    /// the answers. Implicit mode accepts what the last poll returned first.
    pub async fn commit(&mut self) -> Result<(), ShareConsumerError> {
        self.accept_implicitly();
        self.send_acknowledgements(false).await
    }

    /// Accepts what is left (implicit mode), closes every share session and leaves the
    /// group.
    pub async fn close(mut self) -> Result<(), ShareConsumerError> {
        self.accept_implicitly();
        let acknowledged = self.send_acknowledgements(true).await;
        // Leave whatever happened to the acknowledgements (the records they missed come
        // back when their locks run out).
        let left = match self.task.take() {
            Some(task) => {
                let (reply, answer) = oneshot::channel();
                if task.leave.send(reply).is_err() {
                    Ok(()) // the task ended: never joined, or already gone
                } else {
                    answer.await.unwrap_or(Ok(()))
                }
            }
            None => Ok(()),
        };
        acknowledged.and(left)
    }

    /// Starts the membership task, once (it heartbeats at once, joining the group), and
    /// again if it ended (it ends only by panicking, before `close`).
    fn start_membership(&mut self) {
        if self.task.as_ref().is_some_and(|t| !t.handle.is_finished()) {
            return;
        }
        if self.task.is_some() {
            warn!(group = %self.config.group_id, "share consumer membership task ended; starting it again");
        }
        let wake = Arc::new(Notify::new());
        let (leave, asked) = oneshot::channel();
        let heartbeats = Heartbeats {
            config: self.config.clone(),
            cluster: ClusterClient::with_security(
                &self.config.bootstrap,
                self.config.security.clone(),
            ),
            member_id: self.member_id.clone(),
            coordinator: None,
            membership: self.membership.clone(),
        };
        let handle = tokio::spawn(heartbeats.run(wake.clone(), asked));
        self.task = Some(MembershipTask {
            wake,
            leave,
            handle,
        });
    }

    /// Takes in what the membership task learnt: a refusal to report, or a new assignment
    /// (whose topics' names and leaders are then looked up; if that fails, the next poll
    /// tries again).
    async fn take_membership(&mut self) -> Result<(), ShareConsumerError> {
        let (failed, assignment) = {
            let mut m = lock(&self.membership);
            (m.failed.take(), m.assignment.clone())
        };
        if let Some(e) = failed {
            return Err(e.into());
        }
        if assignment != self.assignment {
            self.refresh_metadata().await?;
            self.assignment = assignment;
        }
        Ok(())
    }

    fn accept_implicitly(&mut self) {
        if self.config.explicit_acknowledgement {
            return;
        }
        for (key, offsets) in std::mem::take(&mut self.unacknowledged) {
            let acks = self.pending.entry(key).or_default();
            for o in offsets {
                acks.insert(o, AcknowledgeType::Accept);
            }
        }
    }

    /// Topic names and leaders for the assigned topic ids.
    async fn refresh_metadata(&mut self) -> Result<(), ShareConsumerError> {
        let md =
            match tokio::time::timeout(self.config.request_timeout, self.cluster.metadata(None))
                .await
            {
                Ok(md) => md?,
                Err(_) => {
                    self.cluster.reset(); // cut off mid-request: out of step
                    return Err(ClientError::Closed.into());
                }
            };
        for t in &md.topics {
            if let Some(name) = &t.name {
                self.names.insert(t.topic_id, name.to_string());
            }
        }
        Ok(())
    }

    /// The leader of each assigned partition (None while unknown).
    fn leaders(&self) -> BTreeMap<i32, BTreeSet<(Uuid, i32)>> {
        let mut out: BTreeMap<i32, BTreeSet<(Uuid, i32)>> = BTreeMap::new();
        for (id, p) in &self.assignment {
            let Some(name) = self.names.get(id) else {
                continue;
            };
            if let Some(l) = self.cluster.leader(name, *p).filter(|l| l.leader >= 0) {
                out.entry(l.leader).or_default().insert((*id, *p));
            }
        }
        out
    }

    async fn fetch(&mut self, deadline: Instant) -> Result<Vec<ShareRecord>, ShareConsumerError> {
        let leaders = self.leaders();
        self.settle_sessions(&leaders).await;
        if leaders.is_empty() {
            return Ok(vec![]);
        }
        let wait = deadline
            .saturating_duration_since(Instant::now())
            .min(self.config.fetch_max_wait);
        let patience = wait + self.config.request_timeout;
        let mut out = Vec::new();
        let mut stale = false;
        // One request per leader, side by side.
        let mut calls = Vec::new();
        for (broker, wanted) in leaders {
            let session = self.sessions.entry(broker).or_default();
            let (epoch, in_session) = (session.epoch, session.partitions.clone());
            // Acknowledgements need an open session, and go with partitions it keeps.
            let acks = if epoch > 0 {
                take_acks(&mut self.pending, |k| {
                    in_session.contains(k) && wanted.contains(k)
                })
            } else {
                Acks::new()
            };
            let add: Vec<(Uuid, i32)> = wanted
                .iter()
                .filter(|k| !in_session.contains(k))
                .copied()
                .collect();
            let forget: Vec<(Uuid, i32)> = in_session
                .iter()
                .filter(|k| !wanted.contains(k))
                .copied()
                .collect();
            let req = self.fetch_request(epoch, &add, &forget, &acks, wait);
            let conn = match tokio::time::timeout(patience, self.cluster.take(broker)).await {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => {
                    warn!(broker, error = %e, "share fetch: cannot reach the leader");
                    self.lose_session(broker, acks);
                    stale = true;
                    continue;
                }
                Err(_) => {
                    warn!(broker, "share fetch: no connection to the leader in time");
                    self.lose_session(broker, acks);
                    stale = true;
                    continue;
                }
            };
            calls.push(async move {
                let mut conn = conn;
                let r = tokio::time::timeout(patience, conn.send(req, 1))
                    .await
                    .unwrap_or(Err(ClientError::Closed));
                (broker, conn, r, add, forget, acks)
            });
        }
        // Every answer is taken in (epochs, records) before any error is reported.
        let mut first_error = None;
        for (broker, conn, r, add, forget, acks) in futures::future::join_all(calls).await {
            let r = match r {
                Ok(r) => {
                    self.cluster.put_back(broker, conn);
                    r
                }
                Err(e) => {
                    // Out of step with the broker now: a new connection and session.
                    warn!(broker, error = %e, "share fetch failed");
                    self.cluster.drop_broker(broker);
                    self.lose_session(broker, acks);
                    stale = true;
                    continue;
                }
            };
            match r.error_code {
                0 => {}
                SHARE_SESSION_NOT_FOUND | INVALID_SHARE_SESSION_EPOCH => {
                    // The session is gone (the broker restarted, or it expired): the next
                    // round opens a new one, and the acknowledgements go again with it.
                    self.sessions.remove(&broker);
                    restore_acks(&mut self.pending, acks);
                    continue;
                }
                code => {
                    warn!(broker, code, "share fetch refused");
                    self.sessions.remove(&broker);
                    restore_acks(&mut self.pending, acks);
                    first_error
                        .get_or_insert(BrokerError::new(code, r.error_message.as_deref()).into());
                    continue;
                }
            }
            let session = self.sessions.entry(broker).or_default();
            session.epoch = next_epoch(session.epoch);
            session.partitions.extend(add);
            for k in &forget {
                session.partitions.remove(k);
            }
            stale |= self.take_answer(r, &mut out);
        }
        if stale {
            // The records are acquired already: a failed refresh must not drop them.
            if let Err(e) = self.refresh_metadata().await {
                warn!(error = %e, "share consumer: metadata refresh failed");
                first_error.get_or_insert(e);
            }
        }
        match first_error {
            // Records acquired from the other leaders are handed out; the error shows
            // again at the next poll if it lasts.
            Some(e) if out.is_empty() => Err(e),
            _ => Ok(out),
        }
    }

    /// Before a fetch round: the acknowledgements of partitions a leader's session keeps
    /// but the member no longer fetches there go by ShareAcknowledge (the fetch then forgets
    /// them, so they are not read again); a session left with nothing is closed. Pending
    /// acknowledgements no session can carry any more are dropped and counted as refused:
    /// their records come back when their locks run out.
    async fn settle_sessions(&mut self, leaders: &BTreeMap<i32, BTreeSet<(Uuid, i32)>>) {
        let none = BTreeSet::new();
        let brokers: Vec<i32> = self.sessions.keys().copied().collect();
        for broker in brokers {
            let Some(session) = self.sessions.get(&broker).filter(|s| s.epoch > 0) else {
                continue;
            };
            let wanted = leaders.get(&broker).unwrap_or(&none);
            let leaving: BTreeSet<(Uuid, i32)> =
                session.partitions.difference(wanted).copied().collect();
            let close = wanted.is_empty();
            let acks = take_acks(&mut self.pending, |k| leaving.contains(k));
            if acks.is_empty() && !close {
                continue;
            }
            let epoch = if close { -1 } else { session.epoch };
            if let Err(e) = self.acknowledge_at(broker, epoch, &acks).await {
                debug!(broker, error = %e, "share acknowledge of released partitions failed");
                self.refused_acknowledgements += count(&acks);
            }
        }
        let carried: BTreeSet<(Uuid, i32)> = self
            .sessions
            .values()
            .flat_map(|s| s.partitions.iter().copied())
            .chain(self.assignment.iter().copied())
            .collect();
        let stranded: Acks = take_acks(&mut self.pending, |k| !carried.contains(k));
        self.refused_acknowledgements += count(&stranded);
    }

    /// A session that failed: its acknowledgements wait for the next one.
    fn lose_session(&mut self, broker: i32, acks: Acks) {
        self.sessions.remove(&broker);
        restore_acks(&mut self.pending, acks);
    }

    fn fetch_request(
        &self,
        epoch: i32,
        add: &[(Uuid, i32)],
        forget: &[(Uuid, i32)],
        acks: &Acks,
        wait: Duration,
    ) -> ShareFetchRequest {
        // Partitions named: the new ones and those with acknowledgements.
        let mut named: BTreeMap<Uuid, BTreeMap<i32, Vec<AcknowledgementBatch>>> = BTreeMap::new();
        for (t, p) in add {
            named.entry(*t).or_default().entry(*p).or_default();
        }
        for ((t, p), offsets) in acks {
            named.entry(*t).or_default().entry(*p).or_default().extend(
                batches(offsets).into_iter().map(|(first, last, kind)| {
                    AcknowledgementBatch::default()
                        .with_first_offset(first)
                        .with_last_offset(last)
                        .with_acknowledge_types(vec![kind as i8])
                }),
            );
        }
        let mut forgotten: BTreeMap<Uuid, Vec<i32>> = BTreeMap::new();
        for (t, p) in forget {
            forgotten.entry(*t).or_default().push(*p);
        }
        ShareFetchRequest::default()
            .with_group_id(Some(GroupId(StrBytes::from_string(
                self.config.group_id.clone(),
            ))))
            .with_member_id(Some(StrBytes::from_string(self.member_id.clone())))
            .with_share_session_epoch(epoch)
            .with_max_wait_ms(wait.as_millis() as i32)
            .with_min_bytes(1)
            .with_max_bytes(self.config.fetch_max_bytes)
            .with_max_records(self.config.max_poll_records)
            .with_batch_size(self.config.max_poll_records)
            .with_topics(
                named
                    .into_iter()
                    .map(|(t, ps)| {
                        FetchTopic::default().with_topic_id(t).with_partitions(
                            ps.into_iter()
                                .map(|(p, b)| {
                                    FetchPartition::default()
                                        .with_partition_index(p)
                                        .with_partition_max_bytes(self.config.fetch_max_bytes)
                                        .with_acknowledgement_batches(b)
                                })
                                .collect(),
                        )
                    })
                    .collect(),
            )
            .with_forgotten_topics_data(
                forgotten
                    .into_iter()
                    .map(|(t, ps)| {
                        ForgottenTopic::default()
                            .with_topic_id(t)
                            .with_partitions(ps)
                    })
                    .collect(),
            )
    }

    /// Files one ShareFetch answer's records; true if a partition's leader moved.
    fn take_answer(&mut self, r: ShareFetchResponse, out: &mut Vec<ShareRecord>) -> bool {
        let mut stale = false;
        for t in r.responses {
            let Some(name) = self.names.get(&t.topic_id).cloned() else {
                stale = true;
                continue;
            };
            for p in t.partitions {
                if p.acknowledge_error_code != 0 {
                    self.refused_acknowledgements += 1;
                    debug!(topic = %name, partition = p.partition_index, code = p.acknowledge_error_code, "acknowledgements refused");
                }
                if p.error_code != 0 {
                    let e = ResponseError::try_from_code(p.error_code);
                    if matches!(
                        e,
                        Some(ResponseError::NotLeaderOrFollower)
                            | Some(ResponseError::UnknownTopicOrPartition)
                            | Some(ResponseError::UnknownTopicId)
                            | Some(ResponseError::FencedLeaderEpoch)
                    ) {
                        stale = true;
                    }
                    debug!(topic = %name, partition = p.partition_index, code = p.error_code, "share fetch partition error");
                    continue;
                }
                let (Some(data), false) = (p.records, p.acquired_records.is_empty()) else {
                    continue;
                };
                let tp = TopicPartition::new(name.as_str(), p.partition_index);
                let records = match crate::consumer::fetcher_records(&tp, &data) {
                    Ok(r) => r,
                    Err(e) => {
                        warn!(topic = %name, partition = p.partition_index, error = %e, "undecodable share fetch records");
                        continue;
                    }
                };
                for rec in records {
                    if let Some(a) = p
                        .acquired_records
                        .iter()
                        .find(|a| a.first_offset <= rec.offset && rec.offset <= a.last_offset)
                    {
                        out.push(ShareRecord {
                            delivery_count: a.delivery_count,
                            topic_id: t.topic_id,
                            record: rec,
                        });
                    }
                }
            }
        }
        stale
    }

    /// ShareAcknowledge to every leader with acknowledgements pending (and, closing, to
    /// every leader with a session, at epoch -1).
    async fn send_acknowledgements(&mut self, closing: bool) -> Result<(), ShareConsumerError> {
        let brokers: Vec<i32> = self.sessions.keys().copied().collect();
        let mut first_error = None;
        for broker in brokers {
            let Some(session) = self.sessions.get(&broker).filter(|s| s.epoch > 0) else {
                continue;
            };
            let in_session = session.partitions.clone();
            let acks = take_acks(&mut self.pending, |k| in_session.contains(k));
            if acks.is_empty() && !closing {
                continue;
            }
            let epoch = if closing { -1 } else { session.epoch };
            if let Err(e) = self.acknowledge_at(broker, epoch, &acks).await {
                if closing {
                    self.refused_acknowledgements += count(&acks);
                } else {
                    restore_acks(&mut self.pending, acks);
                }
                first_error.get_or_insert(e);
            }
        }
        if closing {
            let left = std::mem::take(&mut self.pending);
            self.refused_acknowledgements += count(&left);
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// One ShareAcknowledge to `broker` at `epoch` (-1 closes the session), within the
    /// request timeout. The session moves to its next epoch, or is gone (closed, refused or
    /// failed); partitions whose acknowledgements were refused are counted.
    async fn acknowledge_at(
        &mut self,
        broker: i32,
        epoch: i32,
        acks: &Acks,
    ) -> Result<(), ShareConsumerError> {
        let mut topics: BTreeMap<Uuid, Vec<AcknowledgePartition>> = BTreeMap::new();
        for ((t, p), offsets) in acks {
            topics.entry(*t).or_default().push(
                AcknowledgePartition::default()
                    .with_partition_index(*p)
                    .with_acknowledgement_batches(
                        batches(offsets)
                            .into_iter()
                            .map(|(first, last, kind)| {
                                AckBatch::default()
                                    .with_first_offset(first)
                                    .with_last_offset(last)
                                    .with_acknowledge_types(vec![kind as i8])
                            })
                            .collect(),
                    ),
            );
        }
        let req = ShareAcknowledgeRequest::default()
            .with_group_id(Some(GroupId(StrBytes::from_string(
                self.config.group_id.clone(),
            ))))
            .with_member_id(Some(StrBytes::from_string(self.member_id.clone())))
            .with_share_session_epoch(epoch)
            .with_topics(
                topics
                    .into_iter()
                    .map(|(t, ps)| {
                        AcknowledgeTopic::default()
                            .with_topic_id(t)
                            .with_partitions(ps)
                    })
                    .collect(),
            );
        let patience = self.config.request_timeout;
        let cluster = &mut self.cluster;
        let answer = tokio::time::timeout(patience, async move {
            cluster.broker(broker).await?.send(req, 1).await
        })
        .await
        .unwrap_or(Err(ClientError::Closed));
        match answer {
            Ok(r) if r.error_code == 0 => {
                for p in r.responses.iter().flat_map(|t| &t.partitions) {
                    if p.error_code != 0 {
                        self.refused_acknowledgements += 1;
                    }
                }
                match self.sessions.get_mut(&broker) {
                    Some(s) if epoch > 0 => s.epoch = next_epoch(s.epoch),
                    _ => {
                        self.sessions.remove(&broker);
                    }
                }
                Ok(())
            }
            Ok(r) => {
                self.sessions.remove(&broker);
                Err(BrokerError::new(r.error_code, r.error_message.as_deref()).into())
            }
            Err(e) => {
                self.cluster.drop_broker(broker);
                self.sessions.remove(&broker);
                Err(e.into())
            }
        }
    }
}

/// The epoch after `epoch` (past i32::MAX, 1: 0 would open a new session).
/// The membership task: ShareGroupHeartbeat to the group's coordinator every heartbeat
/// interval, over connections of its own, whatever the application is doing.
struct Heartbeats {
    config: ShareConsumerConfig,
    cluster: ClusterClient,
    member_id: String,
    coordinator: Option<i32>,
    membership: Arc<Mutex<Membership>>,
}

/// A heartbeat's outcome: when the next is due, or (leaving) whether the group let go.
enum Beat {
    Next(Instant),
    Left(Result<(), ShareConsumerError>),
}

impl Heartbeats {
    /// Heartbeats until asked to leave (then leaves and says how it went) or until the
    /// consumer is dropped without `close` (then stops; the coordinator expires the member
    /// after its session timeout).
    async fn run(
        mut self,
        wake: Arc<Notify>,
        mut asked: oneshot::Receiver<oneshot::Sender<Result<(), ShareConsumerError>>>,
    ) {
        let mut next = Instant::now();
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(next) => {}
                _ = wake.notified() => {}
                reply = &mut asked => {
                    if let Ok(reply) = reply {
                        let joined = lock(&self.membership).member_epoch > 0;
                        let mut left = Ok(());
                        // A coordinator that moved is looked up again: three tries.
                        for _ in 0..(if joined { 3 } else { 0 }) {
                            left = match self.heartbeat(true).await {
                                Beat::Left(r) => r,
                                Beat::Next(_) => Ok(()),
                            };
                            if left.is_ok() {
                                break;
                            }
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                        let _ = reply.send(left);
                    }
                    return;
                }
            }
            next = match self.heartbeat(false).await {
                Beat::Next(at) => at,
                Beat::Left(_) => return,
            };
        }
    }

    /// One ShareGroupHeartbeat (at epoch -1 if `leave`).
    async fn heartbeat(&mut self, leave: bool) -> Beat {
        let retry = || Instant::now() + Duration::from_millis(200);
        let coordinator = match self.coordinator {
            Some(c) => c,
            None => match tokio::time::timeout(
                self.config.request_timeout,
                self.cluster.find_coordinator(&self.config.group_id),
            )
            .await
            {
                Ok(Ok(c)) => {
                    self.coordinator = Some(c);
                    c
                }
                found => {
                    if found.is_err() {
                        // Cut off mid-request: that connection is out of step.
                        self.cluster.reset();
                    }
                    debug!("share consumer: no coordinator yet");
                    return if leave {
                        Beat::Left(Err(ShareConsumerError::Usage(
                            "no coordinator to leave the group at".into(),
                        )))
                    } else {
                        Beat::Next(retry())
                    };
                }
            },
        };
        let (epoch, topics) = {
            let m = lock(&self.membership);
            (m.member_epoch, m.topics.clone())
        };
        let req = ShareGroupHeartbeatRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(self.config.group_id.clone())))
            .with_member_id(StrBytes::from_string(self.member_id.clone()))
            .with_member_epoch(if leave { -1 } else { epoch })
            .with_subscribed_topic_names(
                (!leave).then(|| topics.iter().map(|t| topic_name(t)).collect()),
            );
        let patience = self.config.request_timeout;
        let cluster = &mut self.cluster;
        let answer = tokio::time::timeout(patience, async move {
            cluster.broker(coordinator).await?.send(req, 1).await
        })
        .await
        .unwrap_or(Err(ClientError::Closed));
        let r = match answer {
            Ok(r) => r,
            Err(e) => {
                self.lost_coordinator(coordinator);
                return if leave {
                    Beat::Left(Err(e.into()))
                } else {
                    Beat::Next(retry())
                };
            }
        };
        let mut m = lock(&self.membership);
        match r.error_code {
            0 => {}
            NOT_COORDINATOR | COORDINATOR_NOT_AVAILABLE | COORDINATOR_LOAD_IN_PROGRESS => {
                drop(m);
                self.lost_coordinator(coordinator);
                return if leave {
                    Beat::Left(Err(BrokerError::new(r.error_code, None).into()))
                } else {
                    Beat::Next(retry())
                };
            }
            UNKNOWN_MEMBER_ID | FENCED_MEMBER_EPOCH if !leave => {
                // Out of the group: rejoin at epoch 0 with the same id, at once.
                info!(group = %self.config.group_id, "share consumer rejoins the group");
                m.member_epoch = 0;
                m.assignment.clear();
                return Beat::Next(Instant::now());
            }
            code => {
                let e = BrokerError::new(code, r.error_message.as_deref());
                if leave {
                    return Beat::Left(Err(e.into()));
                }
                // The application hears of it at its next poll; the task tries again.
                warn!(group = %self.config.group_id, error = %e, "share group heartbeat refused");
                m.failed = Some(e);
                return Beat::Next(Instant::now() + Duration::from_secs(1));
            }
        }
        if leave {
            m.member_epoch = -1;
            m.assignment.clear();
            return Beat::Left(Ok(()));
        }
        m.member_epoch = r.member_epoch;
        m.failed = None; // a refusal since cleared is not reported
        if let Some(a) = r.assignment {
            let next: BTreeSet<(Uuid, i32)> = a
                .topic_partitions
                .iter()
                .flat_map(|t| t.partitions.iter().map(move |p| (t.topic_id, *p)))
                .collect();
            if next != m.assignment {
                info!(group = %self.config.group_id, partitions = next.len(), "share consumer assignment");
            }
            m.assignment = next;
        }
        let interval = Duration::from_millis(r.heartbeat_interval_ms.clamp(100, 60_000) as u64);
        Beat::Next(Instant::now() + interval)
    }

    fn lost_coordinator(&mut self, id: i32) {
        self.coordinator = None;
        self.cluster.drop_broker(id);
    }
}

/// The membership, whatever a panicking holder left (its fields are each consistent).
fn lock(m: &Mutex<Membership>) -> std::sync::MutexGuard<'_, Membership> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn next_epoch(epoch: i32) -> i32 {
    if epoch == i32::MAX {
        1
    } else {
        epoch + 1
    }
}

/// The acknowledgements in `acks`.
fn count(acks: &Acks) -> u64 {
    acks.values().map(|o| o.len() as u64).sum()
}

/// Takes the pending acknowledgements of the partitions `which` picks.
fn take_acks(pending: &mut Acks, which: impl Fn(&(Uuid, i32)) -> bool) -> Acks {
    let keys: Vec<(Uuid, i32)> = pending.keys().filter(|k| which(k)).copied().collect();
    keys.into_iter()
        .filter_map(|k| pending.remove(&k).map(|v| (k, v)))
        .filter(|(_, v)| !v.is_empty())
        .collect()
}

/// Puts acknowledgements that were not delivered back (newer ones for an offset win).
fn restore_acks(pending: &mut Acks, acks: Acks) {
    for (k, offsets) in acks {
        let p = pending.entry(k).or_default();
        for (o, kind) in offsets {
            p.entry(o).or_insert(kind);
        }
    }
}

/// Offsets with their types as runs of consecutive offsets of one type: (first, last, type).
fn batches(offsets: &BTreeMap<i64, AcknowledgeType>) -> Vec<(i64, i64, AcknowledgeType)> {
    let mut out: Vec<(i64, i64, AcknowledgeType)> = Vec::new();
    for (&o, &kind) in offsets {
        match out.last_mut() {
            Some((_, last, k)) if *last + 1 == o && *k == kind => *last = o,
            _ => out.push((o, o, kind)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acknowledgements_go_as_runs_of_one_type() {
        use AcknowledgeType::*;
        let offsets: BTreeMap<i64, AcknowledgeType> = [
            (3, Accept),
            (4, Accept),
            (5, Release),
            (7, Accept),
            (8, Reject),
            (9, Reject),
        ]
        .into_iter()
        .collect();
        assert_eq!(
            batches(&offsets),
            vec![
                (3, 4, Accept),
                (5, 5, Release),
                (7, 7, Accept),
                (8, 9, Reject)
            ]
        );
    }

    #[test]
    fn undelivered_acknowledgements_come_back_without_overwriting_newer_ones() {
        let t = Uuid::new_v4();
        let mut pending = Acks::new();
        pending
            .entry((t, 0))
            .or_default()
            .insert(5, AcknowledgeType::Reject);
        let sent: Acks = [(
            (t, 0),
            [(4, AcknowledgeType::Accept), (5, AcknowledgeType::Accept)]
                .into_iter()
                .collect(),
        )]
        .into_iter()
        .collect();
        restore_acks(&mut pending, sent);
        assert_eq!(pending[&(t, 0)][&4], AcknowledgeType::Accept);
        assert_eq!(pending[&(t, 0)][&5], AcknowledgeType::Reject);
        let taken = take_acks(&mut pending, |k| k.1 == 0);
        assert_eq!(taken[&(t, 0)].len(), 2);
        assert!(pending.is_empty());
    }
}
