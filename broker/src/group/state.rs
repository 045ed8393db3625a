//! Group membership state and its transitions.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::oneshot;
use tracing::{info, warn};

use super::consumer::{
    self, ClassicSeed, ConsumerGroup, ConsumerGroupConfig, ConsumerGroupView, Heartbeat,
    HeartbeatOutcome, TopicSource, LEAVE_EPOCH,
};
use super::offsets::Committed;
use super::record::{GroupRecord, MemberRecord};

pub(super) const UNKNOWN_MEMBER_ID: i16 = 25;
pub(super) const ILLEGAL_GENERATION: i16 = 22;
pub(super) const REBALANCE_IN_PROGRESS: i16 = 27;
pub(super) const INCONSISTENT_GROUP_PROTOCOL: i16 = 23;
pub(super) const MEMBER_ID_REQUIRED: i16 = 79;
const INVALID_SESSION_TIMEOUT: i16 = 26;
pub(super) const FENCED_INSTANCE_ID: i16 = 82;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl GroupState {
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
        }
    }
}

/// What a JoinGroup gets back.
#[derive(Debug, Clone, Default)]
pub struct JoinOutcome {
    pub error: i16,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// (member id, group instance id, metadata): for the leader only.
    pub members: Vec<(String, Option<String>, Bytes)>,
    /// KIP-814 (JoinGroup v9+): a static leader back in a stable group learns it leads, but
    /// must not run the assignor (the group keeps its assignment).
    pub skip_assignment: bool,
}

/// What a SyncGroup gets back.
#[derive(Debug, Clone, Default)]
pub struct SyncOutcome {
    pub error: i16,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

struct Member {
    /// When it joined the group: the longest-standing member leads, as in Kafka.
    joined_at: Instant,
    instance_id: Option<String>,
    client_id: String,
    host: String,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    protocols: Vec<(String, Bytes)>,
    assignment: Bytes,
    last_heartbeat: Instant,
    join_waiter: Option<oneshot::Sender<JoinOutcome>>,
    sync_waiter: Option<oneshot::Sender<SyncOutcome>>,
}

impl Member {
    /// A member the coordinator takes over rather than one that joined here (a loaded
    /// group, a group converted from the consumer protocol): waiting for nothing, its
    /// session starting `joined_at`. `timeouts`: (session, rebalance).
    fn restored(
        joined_at: Instant,
        instance_id: Option<String>,
        client_id: String,
        host: String,
        (session_timeout, rebalance_timeout): (Duration, Duration),
        protocols: Vec<(String, Bytes)>,
        assignment: Bytes,
    ) -> Self {
        Member {
            joined_at,
            instance_id,
            client_id,
            host,
            session_timeout,
            rebalance_timeout,
            protocols,
            assignment,
            last_heartbeat: joined_at,
            join_waiter: None,
            sync_waiter: None,
        }
    }
}

struct Group {
    state: GroupState,
    generation: i32,
    protocol_type: Option<String>,
    protocol: Option<String>,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, not joined yet, and until when they
    /// may join with them (a session timeout, as Kafka's pending members).
    pending: HashMap<String, Instant>,
    /// When the join phase ends at the latest.
    join_deadline: Instant,
    /// A group formed from Empty waits the initial delay even when everyone has joined.
    initial_join: bool,
    /// The leader's assignment is being written to `__consumer_offsets`; members get it once
    /// that write is replicated ([`GroupCoordinator::stored`]).
    storing: bool,
    /// Changed in a way `__consumer_offsets` must record (it became empty, a static member
    /// took its place back): returned by the next [`GroupCoordinator::tick`].
    dirty: bool,
    /// Rebalances this group completed here (joins that ended with members).
    rebalances: u64,
}

impl Group {
    /// The member id that holds static membership `instance` (group.instance.id).
    fn static_member(&self, instance: &str) -> Option<String> {
        self.members
            .iter()
            .find(|(_, m)| m.instance_id.as_deref() == Some(instance))
            .map(|(id, _)| id.clone())
    }

    /// `m`'s subscription metadata for the chosen protocol (empty before one is chosen).
    fn metadata_of(&self, m: &Member) -> Bytes {
        self.protocol
            .as_ref()
            .and_then(|p| m.protocols.iter().find(|(n, _)| n == p))
            .map(|(_, b)| b.clone())
            .unwrap_or_default()
    }

    fn new() -> Self {
        Self {
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            pending: HashMap::new(),
            join_deadline: Instant::now(),
            initial_join: false,
            storing: false,
            dirty: false,
            rebalances: 0,
        }
    }

    /// What `__consumer_offsets` keeps of this group: its last stable (or empty) generation.
    fn record(&self) -> GroupRecord {
        let mut members: Vec<(&String, &Member)> = self.members.iter().collect();
        members.sort_by_key(|(_, m)| m.joined_at);
        GroupRecord {
            protocol_type: self.protocol_type.clone(),
            generation: self.generation,
            protocol: self.protocol.clone(),
            leader: self.leader.clone(),
            members: members
                .into_iter()
                .map(|(id, m)| MemberRecord {
                    member_id: id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    host: m.host.clone(),
                    session_timeout_ms: m.session_timeout.as_millis() as u64,
                    rebalance_timeout_ms: m.rebalance_timeout.as_millis() as u64,
                    subscription: self.metadata_of(m).to_vec(),
                    assignment: m.assignment.to_vec(),
                })
                .collect(),
        }
    }

    /// A consumer group's classic members as a classic group at `generation`, preparing a
    /// rebalance (an online downgrade). The first member leads until the join completes.
    fn from_seeds(generation: i32, seeds: Vec<ClassicSeed>, now: Instant) -> Self {
        let mut g = Group::new();
        g.generation = generation;
        g.protocol_type = Some("consumer".to_string());
        for (i, seed) in seeds.into_iter().enumerate() {
            g.members.insert(
                seed.member_id,
                Member::restored(
                    now + Duration::from_micros(i as u64),
                    seed.instance_id,
                    seed.client_id,
                    seed.host,
                    (seed.session_timeout, seed.rebalance_timeout),
                    seed.protocols,
                    seed.assignment,
                ),
            );
        }
        g.leader = g
            .members
            .iter()
            .min_by_key(|(_, m)| m.joined_at)
            .map(|(id, _)| id.clone());
        g.protocol = select_protocol(&g);
        g.state = GroupState::Stable;
        prepare_rebalance(&mut g, now);
        g
    }

    /// A group as a new coordinator loads it: Stable with its members (each with a fresh
    /// session), or Empty.
    fn from_record(r: GroupRecord, now: Instant) -> Self {
        let mut g = Group::new();
        g.generation = r.generation;
        g.protocol_type = r.protocol_type;
        g.protocol = r.protocol.clone();
        g.leader = r.leader;
        for (i, m) in r.members.into_iter().enumerate() {
            g.members.insert(
                m.member_id,
                Member::restored(
                    // Join order survives: the longest-standing member still leads.
                    now + Duration::from_micros(i as u64),
                    m.instance_id,
                    m.client_id,
                    m.host,
                    (
                        Duration::from_millis(m.session_timeout_ms),
                        Duration::from_millis(m.rebalance_timeout_ms),
                    ),
                    r.protocol
                        .clone()
                        .map(|p| vec![(p, Bytes::from(m.subscription))])
                        .unwrap_or_default(),
                    Bytes::from(m.assignment),
                ),
            );
        }
        g.state = if g.members.is_empty() {
            GroupState::Empty
        } else {
            GroupState::Stable
        };
        g
    }
}

/// A SyncGroup's answer (now or later) and, for the leader's that completes a generation, the
/// group record the caller writes to `__consumer_offsets` and reports with
/// [`GroupCoordinator::stored`]; no member is answered before that.
pub struct SyncReply {
    pub reply: Reply<SyncOutcome>,
    /// (generation, record)
    pub store: Option<(i32, GroupRecord)>,
}

/// A record for `__consumer_offsets`: a group's metadata, or (None) its tombstone.
pub type GroupWrite = (String, Option<GroupRecord>);
/// The same for a consumer-protocol group.
pub type ConsumerGroupWrite = (String, Option<consumer::ConsumerGroupRecord>);

/// A description of one group for DescribeGroups and the HTTP API.
#[derive(Debug, Clone)]
pub struct GroupDescription {
    pub group_id: String,
    pub state: &'static str,
    pub protocol_type: String,
    pub protocol: String,
    pub generation: i32,
    /// (member id, instance id, client id, host, metadata, assignment)
    pub members: Vec<(String, Option<String>, String, String, Bytes, Bytes)>,
}

/// A group's committed offsets by (topic, partition).
pub type GroupOffsets = BTreeMap<(String, i32), Committed>;

/// A tick's group records, to be written in this order: [`Self::classic`] (classic
/// groups' records, the records of groups converted back from the consumer protocol, the
/// tombstones of deleted ones), [`Self::consumer`] (consumer groups' records and
/// tombstones), then [`Self::upgraded`]: the classic tombstones of groups converted to the
/// consumer protocol, each after its consumer record, and left out if that record could not
/// be written (a failed append then leaves the classic record, not nothing).
#[derive(Debug, Default)]
pub struct TickWrites {
    pub classic: Vec<GroupWrite>,
    pub consumer: Vec<ConsumerGroupWrite>,
    pub upgraded: Vec<String>,
}

pub struct GroupCoordinator {
    groups: Mutex<HashMap<String, Group>>,
    pub(super) offsets: Mutex<HashMap<String, GroupOffsets>>,
    /// Group records to write at the next tick whatever the group's state: tombstones of
    /// deleted groups, and the record of a group just converted back from the consumer
    /// protocol.
    queued: Mutex<Vec<GroupWrite>>,
    /// Classic groups converted to the consumer protocol whose classic record is still to be
    /// tombstoned: written after the consumer group's record ([`TickWrites::upgraded`]).
    upgraded: Mutex<Vec<String>>,
    initial_delay: Duration,
    /// Transactional offset commits awaiting their transaction's marker, by offsets
    /// partition and producer id: (group, topic, partition, offset).
    pub(super) pending_txn: Mutex<HashMap<(i32, i64), Vec<super::offsets::PendingOffset>>>,
    /// Groups of the consumer protocol (KIP-848). A group id is in this map or in `groups`,
    /// never both with members; the lock order is `groups`, then `consumer`.
    consumer: Mutex<HashMap<String, ConsumerGroup>>,
    consumer_config: ConsumerGroupConfig,
    /// Per-group overrides of `consumer_config`.
    group_configs: super::GroupConfigs,
    /// Consumer-protocol groups deleted (or now classic) whose record needs its tombstone.
    consumer_tombstones: Mutex<Vec<String>>,
}

/// Arguments of a JoinGroup.
pub struct JoinRequest {
    pub group_id: String,
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    /// v4+: a new member must first obtain its id (MEMBER_ID_REQUIRED).
    pub require_known_member_id: bool,
    /// v9+: the answer may tell a returning static leader to skip the assignment.
    pub supports_skip_assignment: bool,
}

pub enum Reply<T> {
    Now(T),
    Later(oneshot::Receiver<T>),
}

impl GroupCoordinator {
    pub fn new(initial_delay: Duration) -> Self {
        Self {
            groups: Mutex::new(HashMap::new()),
            offsets: Mutex::new(HashMap::new()),
            queued: Mutex::new(Vec::new()),
            upgraded: Mutex::new(Vec::new()),
            initial_delay,
            pending_txn: Mutex::new(HashMap::new()),
            consumer: Mutex::new(HashMap::new()),
            consumer_config: ConsumerGroupConfig::default(),
            group_configs: super::GroupConfigs::default(),
            consumer_tombstones: Mutex::new(Vec::new()),
        }
    }

    /// The timing of consumer-protocol groups.
    pub fn with_consumer_config(mut self, config: ConsumerGroupConfig) -> Self {
        self.consumer_config = config;
        self
    }

    /// Where groups' own configs (`consumer.session.timeout.ms`, ...) are read from.
    pub fn with_group_configs(mut self, configs: super::GroupConfigs) -> Self {
        self.group_configs = configs;
        self
    }

    /// The broker's timing of consumer-protocol groups.
    pub fn consumer_config(&self) -> ConsumerGroupConfig {
        self.consumer_config
    }

    /// The timing of one consumer-protocol group: its own configs, else the broker's.
    pub fn consumer_config_of(&self, group: &str) -> ConsumerGroupConfig {
        use metadata_quorum::configs::{
            CONSUMER_HEARTBEAT_INTERVAL_MS, CONSUMER_SESSION_TIMEOUT_MS,
        };
        let mut c = self.consumer_config;
        let g = self.group_configs.of(group);
        if let Some(d) = g.ms(CONSUMER_SESSION_TIMEOUT_MS) {
            c.session_timeout = d;
        }
        if let Some(d) = g.ms(CONSUMER_HEARTBEAT_INTERVAL_MS) {
            c.heartbeat_interval = d;
        }
        c
    }

    /// A ConsumerGroupHeartbeat (KIP-848). A classic group with members keeps its id; an
    /// empty one gives way.
    pub fn consumer_heartbeat(&self, req: Heartbeat, topics: &dyn TopicSource) -> HeartbeatOutcome {
        if let Err((code, message)) = consumer::validate(&req) {
            return HeartbeatOutcome::error(code, message, &req);
        }
        let mut classic = self.groups.lock();
        let mut groups = self.consumer.lock();
        if let Some(g) = classic.get(&req.group_id) {
            if !g.members.is_empty() {
                // An online upgrade: the first consumer-protocol member turns a stable
                // classic group into a consumer group its classic members stay in.
                let converted = (req.member_epoch == 0
                    && self.consumer_config.migration.allows_upgrade()
                    && g.state == GroupState::Stable
                    && !g.storing
                    && g.protocol_type.as_deref() == Some("consumer"))
                .then(|| {
                    let seeds = g
                        .members
                        .iter()
                        .map(|(id, m)| ClassicSeed {
                            member_id: id.clone(),
                            instance_id: m.instance_id.clone(),
                            client_id: m.client_id.clone(),
                            host: m.host.clone(),
                            session_timeout: m.session_timeout,
                            rebalance_timeout: m.rebalance_timeout,
                            protocols: m.protocols.clone(),
                            subscription: g.metadata_of(m),
                            assignment: m.assignment.clone(),
                        })
                        .collect();
                    ConsumerGroup::from_classic(
                        &req.group_id,
                        g.generation,
                        seeds,
                        topics,
                        Instant::now(),
                    )
                })
                .flatten();
                let Some(converted) = converted else {
                    let (code, message) = consumer::classic_group_error(&req.group_id);
                    return HeartbeatOutcome::error(code, message, &req);
                };
                groups.insert(req.group_id.clone(), converted);
            }
            classic.remove(&req.group_id);
            self.queued.lock().retain(|(id, _)| *id != req.group_id);
            self.upgraded.lock().push(req.group_id.clone());
        }
        if req.member_epoch != 0 && !groups.contains_key(&req.group_id) {
            return consumer::unknown_member(&req);
        }
        let now = Instant::now();
        let g = groups.entry(req.group_id.clone()).or_default();
        // A leave that leaves only classic members: they become a classic group, at the
        // epoch they hold now.
        let downgrade = (req.member_epoch == LEAVE_EPOCH
            && self.consumer_config.migration.allows_downgrade())
        .then(|| g.to_classic_without(std::slice::from_ref(&req.member_id)))
        .flatten();
        let config = self.consumer_config_of(&req.group_id);
        let outcome = g.heartbeat(&req.group_id, &req, topics, &config, now);
        if let (0, Some(classic_group)) = (outcome.error, downgrade) {
            self.downgrade(&mut classic, &mut groups, &req.group_id, classic_group, now);
        }
        outcome
    }

    /// An online downgrade: a consumer group whose remaining members all speak the classic
    /// protocol (its last consumer-protocol members left or were removed), as
    /// [`ConsumerGroup::to_classic_without`] made it before they went, becomes a classic
    /// group again. Its generation is the epoch its members hold and they keep their
    /// assignments (commits go on), then it prepares a rebalance: each member's next
    /// Heartbeat answers REBALANCE_IN_PROGRESS and the group's leader assigns again, as after
    /// any classic membership change. Its record is written at the next tick, before the
    /// consumer group's tombstone ([`Self::tick_writes`]). Takes both maps (locked in that
    /// order).
    fn downgrade(
        &self,
        classic: &mut HashMap<String, Group>,
        consumer: &mut HashMap<String, ConsumerGroup>,
        group_id: &str,
        (generation, seeds): (i32, Vec<ClassicSeed>),
        now: Instant,
    ) {
        consumer.remove(group_id);
        self.consumer_tombstones.lock().push(group_id.to_string());
        // Upgraded and back within a tick: the classic record written now must stay last.
        self.upgraded.lock().retain(|id| id != group_id);
        let g = Group::from_seeds(generation, seeds, now);
        info!(
            group = group_id,
            generation,
            members = g.members.len(),
            "consumer group converted back to a classic group"
        );
        self.queued
            .lock()
            .push((group_id.to_string(), Some(g.record())));
        classic.insert(group_id.to_string(), g);
    }

    /// A consumer-protocol group as ConsumerGroupDescribe shows it.
    pub fn describe_consumer_group(&self, group_id: &str) -> Option<ConsumerGroupView> {
        self.consumer.lock().get(group_id).map(|g| g.view())
    }

    /// "consumer" for a group of the consumer protocol, "classic" otherwise.
    pub fn group_type(&self, group_id: &str) -> &'static str {
        if self.consumer.lock().contains_key(group_id) {
            "consumer"
        } else {
            "classic"
        }
    }

    /// The error an OffsetFetch (v9+) naming a member gets: 0 when the member may read.
    pub fn validate_fetch(&self, group_id: &str, member_id: Option<&str>, epoch: i32) -> i16 {
        let Some(member) = member_id else {
            return 0;
        };
        if epoch < 0 && member.is_empty() {
            return 0;
        }
        match self.consumer.lock().get(group_id) {
            Some(g) => g.validate_member(member, epoch),
            None => 0,
        }
    }

    pub fn join(&self, req: JoinRequest) -> Reply<JoinOutcome> {
        self.join_with(req, &consumer::NoTopics)
    }

    /// A JoinGroup; `topics` resolves a classic member's subscription when its group is a
    /// consumer group (an online upgrade in progress).
    pub fn join_with(&self, req: JoinRequest, topics: &dyn TopicSource) -> Reply<JoinOutcome> {
        let now = Instant::now();
        let fail = |error: i16, member_id: String| {
            Reply::Now(JoinOutcome {
                error,
                member_id,
                generation: -1,
                ..Default::default()
            })
        };
        if req.session_timeout < Duration::from_millis(1000)
            || req.session_timeout > Duration::from_secs(1800)
        {
            return fail(INVALID_SESSION_TIMEOUT, req.member_id);
        }
        let mut groups = self.groups.lock();
        {
            // A group of the consumer protocol with members keeps its id (Kafka answers
            // classic members so when online migration is off); an empty one gives way.
            let mut consumer = self.consumer.lock();
            match consumer.get_mut(&req.group_id) {
                Some(c) if !c.is_empty() => {
                    if req.protocol_type != "consumer" {
                        return fail(INCONSISTENT_GROUP_PROTOCOL, req.member_id);
                    }
                    // A classic member of a consumer group: the coordinator assigns.
                    return Reply::Now(c.classic_join(&req.group_id.clone(), req, topics, now));
                }
                Some(_) => {
                    consumer.remove(&req.group_id);
                    self.consumer_tombstones.lock().push(req.group_id.clone());
                }
                None => {}
            }
        }
        let g = groups
            .entry(req.group_id.clone())
            .or_insert_with(Group::new);
        let mut member_id = req.member_id.clone();
        // A static member back in its place: (was it the leader, the member id it had).
        let mut static_rejoin: Option<(bool, String)> = None;
        // Static membership (KIP-345): a known group.instance.id takes its place back.
        if let Some(instance) = &req.instance_id {
            match g.static_member(instance) {
                Some(old) if !member_id.is_empty() && member_id != old => {
                    return fail(FENCED_INSTANCE_ID, member_id);
                }
                Some(old) if member_id.is_empty() => {
                    // A restarted static member: new member id, same place, same assignment.
                    let new_id = format!("{}-{}", req.client_id, uuid::Uuid::new_v4());
                    if let Some(mut m) = g.members.remove(&old) {
                        if let Some(w) = m.join_waiter.take() {
                            let _ = w.send(JoinOutcome {
                                error: FENCED_INSTANCE_ID,
                                generation: -1,
                                ..Default::default()
                            });
                        }
                        if let Some(w) = m.sync_waiter.take() {
                            let _ = w.send(SyncOutcome {
                                error: FENCED_INSTANCE_ID,
                                ..Default::default()
                            });
                        }
                        m.last_heartbeat = now;
                        g.members.insert(new_id.clone(), m);
                    }
                    let was_leader = g.leader.as_deref() == Some(old.as_str());
                    if was_leader {
                        g.leader = Some(new_id.clone());
                    }
                    static_rejoin = Some((was_leader, old.clone()));
                    info!(group = %req.group_id, %instance, member = %new_id, "static member rejoined");
                    member_id = new_id;
                    g.dirty = true;
                }
                _ => {}
            }
        }
        if member_id.is_empty() {
            member_id = format!("{}-{}", req.client_id, uuid::Uuid::new_v4());
            if req.require_known_member_id {
                g.pending
                    .insert(member_id.clone(), now + req.session_timeout);
                return fail(MEMBER_ID_REQUIRED, member_id);
            }
        } else if !g.members.contains_key(&member_id) && !g.pending.contains_key(&member_id) {
            return fail(UNKNOWN_MEMBER_ID, member_id);
        }
        if !g.members.is_empty() {
            let same_type = g.protocol_type.as_deref() == Some(req.protocol_type.as_str());
            let shared = req.protocols.iter().any(|(p, _)| {
                g.members
                    .values()
                    .filter(|m| !m.protocols.is_empty())
                    .all(|m| m.protocols.iter().any(|(q, _)| q == p))
            });
            if !same_type || !shared {
                return fail(INCONSISTENT_GROUP_PROTOCOL, member_id);
            }
        }
        g.pending.remove(&member_id);
        g.protocol_type = Some(req.protocol_type.clone());
        let (tx, rx) = oneshot::channel();
        let known = g.members.contains_key(&member_id);
        let unchanged = known
            && g.state == GroupState::Stable
            && g.members
                .get(&member_id)
                .is_some_and(|m| m.protocols == req.protocols);
        let member = g
            .members
            .entry(member_id.clone())
            .or_insert_with(|| Member {
                joined_at: now,
                instance_id: req.instance_id.clone(),
                client_id: req.client_id.clone(),
                host: req.host.clone(),
                session_timeout: req.session_timeout,
                rebalance_timeout: req.rebalance_timeout,
                protocols: vec![],
                assignment: Bytes::new(),
                last_heartbeat: now,
                join_waiter: None,
                sync_waiter: None,
            });
        member.protocols = req.protocols;
        member.session_timeout = req.session_timeout;
        member.rebalance_timeout = req.rebalance_timeout;
        member.last_heartbeat = now;
        member.join_waiter = Some(tx);
        if unchanged && g.leader.as_deref() != Some(member_id.as_str()) {
            // A follower rejoining a stable group with the same protocols: answer at once.
            complete_join_for(g, &member_id);
            return Reply::Later(rx);
        }
        if let (true, Some((true, old_id))) = (unchanged, &static_rejoin) {
            // The static leader is back in a stable group with the same protocols: no
            // rebalance, as in Kafka. From v9 it learns it leads but skips the assignment
            // (KIP-814); before, it is told the old member id leads, so it does not run an
            // assignor whose result a stable group would ignore. The replaced member id is
            // recorded (the group is dirty).
            if req.supports_skip_assignment {
                complete_join_for(g, &member_id);
            } else {
                let old_id = old_id.clone();
                if let Some(w) = g
                    .members
                    .get_mut(&member_id)
                    .and_then(|m| m.join_waiter.take())
                {
                    let _ = w.send(JoinOutcome {
                        error: 0,
                        generation: g.generation,
                        protocol_type: g.protocol_type.clone(),
                        protocol_name: g.protocol.clone(),
                        leader: old_id,
                        member_id: member_id.clone(),
                        members: vec![],
                        skip_assignment: false,
                    });
                }
            }
            return Reply::Later(rx);
        }
        match g.state {
            GroupState::PreparingRebalance => {}
            GroupState::Empty => {
                g.initial_join = true;
                g.join_deadline = now + self.initial_delay;
                g.state = GroupState::PreparingRebalance;
            }
            GroupState::Stable | GroupState::CompletingRebalance => prepare_rebalance(g, now),
        }
        maybe_complete_join(&req.group_id, g, now);
        Reply::Later(rx)
    }

    pub fn sync(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        assignments: Vec<(String, Bytes)>,
    ) -> SyncReply {
        let answer = |reply| SyncReply { reply, store: None };
        let fail = |error: i16| {
            answer(Reply::Now(SyncOutcome {
                error,
                ..Default::default()
            }))
        };
        if let Some(c) = self.consumer.lock().get(group_id) {
            if c.fences(instance_id, member_id) {
                return fail(FENCED_INSTANCE_ID);
            }
            if c.has_member(member_id) {
                return answer(Reply::Now(match c.classic_sync(member_id, generation) {
                    Ok((assignment, protocol)) => SyncOutcome {
                        error: 0,
                        protocol_type: Some("consumer".into()),
                        protocol_name: protocol,
                        assignment,
                    },
                    Err(error) => SyncOutcome {
                        error,
                        ..Default::default()
                    },
                }));
            }
        }
        let mut groups = self.groups.lock();
        let Some(g) = groups.get_mut(group_id) else {
            return fail(UNKNOWN_MEMBER_ID);
        };
        if fenced(g, instance_id, member_id) {
            return fail(FENCED_INSTANCE_ID);
        }
        if !g.members.contains_key(member_id) {
            return fail(UNKNOWN_MEMBER_ID);
        }
        if generation != g.generation {
            return fail(ILLEGAL_GENERATION);
        }
        match g.state {
            GroupState::Empty | GroupState::PreparingRebalance => fail(REBALANCE_IN_PROGRESS),
            GroupState::Stable => answer(Reply::Now(SyncOutcome {
                error: 0,
                protocol_type: g.protocol_type.clone(),
                protocol_name: g.protocol.clone(),
                assignment: g
                    .members
                    .get(member_id)
                    .map(|m| m.assignment.clone())
                    .unwrap_or_default(),
            })),
            GroupState::CompletingRebalance => {
                let (tx, rx) = oneshot::channel();
                if let Some(m) = g.members.get_mut(member_id) {
                    m.sync_waiter = Some(tx);
                    m.last_heartbeat = Instant::now();
                }
                let mut store = None;
                if g.leader.as_deref() == Some(member_id) && !g.storing {
                    // The leader's assignment: made durable first, handed out after.
                    let given: HashMap<String, Bytes> = assignments.into_iter().collect();
                    for (id, m) in g.members.iter_mut() {
                        m.assignment = given.get(id).cloned().unwrap_or_default();
                    }
                    g.storing = true;
                    store = Some((g.generation, g.record()));
                    // Anything queued for the group (a conversion's record, a deletion's
                    // tombstone) is older than this one: written after it, it would bring
                    // the group back at an older generation, or lose it.
                    self.queued.lock().retain(|(queued, _)| queued != group_id);
                    self.upgraded.lock().retain(|id| id != group_id);
                }
                SyncReply {
                    reply: Reply::Later(rx),
                    store,
                }
            }
        }
    }

    /// The group record of `generation` was written and replicated (`ok`), or could not be:
    /// members get their assignments and the group is Stable, or they get `error` and the
    /// group rebalances.
    pub fn stored(&self, group_id: &str, generation: i32, ok: bool, error: i16) {
        let mut groups = self.groups.lock();
        let Some(g) = groups.get_mut(group_id) else {
            return;
        };
        if g.generation != generation || g.state != GroupState::CompletingRebalance || !g.storing {
            return;
        }
        g.storing = false;
        if ok {
            g.state = GroupState::Stable;
            info!(
                group = group_id,
                generation = g.generation,
                members = g.members.len(),
                "group stable"
            );
        } else {
            warn!(
                group = group_id,
                generation, "the group's assignment could not be stored"
            );
            for m in g.members.values_mut() {
                m.assignment = Bytes::new();
            }
        }
        let (pt, pn) = (g.protocol_type.clone(), g.protocol.clone());
        for m in g.members.values_mut() {
            if let Some(w) = m.sync_waiter.take() {
                let _ = w.send(SyncOutcome {
                    error: if ok { 0 } else { error },
                    protocol_type: pt.clone(),
                    protocol_name: pn.clone(),
                    assignment: m.assignment.clone(),
                });
            }
        }
        if !ok {
            prepare_rebalance(g, Instant::now());
        }
    }

    /// A group as `__consumer_offsets` recorded it, taken over by this coordinator (unless it
    /// already knows the group).
    pub fn restore(&self, group_id: &str, record: GroupRecord) {
        let mut groups = self.groups.lock();
        if groups.contains_key(group_id) {
            return;
        }
        let g = Group::from_record(record, Instant::now());
        info!(
            group = group_id,
            generation = g.generation,
            members = g.members.len(),
            state = g.state.name(),
            "group loaded"
        );
        groups.insert(group_id.to_string(), g);
    }

    pub fn heartbeat(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> i16 {
        if let Some(c) = self.consumer.lock().get_mut(group_id) {
            if c.fences(instance_id, member_id) {
                return FENCED_INSTANCE_ID;
            }
            if c.has_member(member_id) {
                return c.classic_heartbeat(member_id, generation, Instant::now());
            }
        }
        let mut groups = self.groups.lock();
        let Some(g) = groups.get_mut(group_id) else {
            return UNKNOWN_MEMBER_ID;
        };
        if fenced(g, instance_id, member_id) {
            return FENCED_INSTANCE_ID;
        }
        let state = g.state;
        let current = g.generation;
        let Some(m) = g.members.get_mut(member_id) else {
            return UNKNOWN_MEMBER_ID;
        };
        m.last_heartbeat = Instant::now();
        if state == GroupState::PreparingRebalance {
            return REBALANCE_IN_PROGRESS;
        }
        if generation != current {
            return ILLEGAL_GENERATION;
        }
        0
    }

    /// The member id a static member (group.instance.id) holds now (tests).
    #[cfg(test)]
    pub fn member_for_instance(&self, group_id: &str, instance: &str) -> Option<String> {
        let groups = self.groups.lock();
        if let Some(c) = self.consumer.lock().get(group_id) {
            return c.instance_holder(instance).cloned();
        }
        groups.get(group_id)?.static_member(instance)
    }

    /// Removes dynamic members by id; an error code per member ([`Self::leave_members`];
    /// tests).
    #[cfg(test)]
    pub fn leave(&self, group_id: &str, members: &[String]) -> Vec<i16> {
        let members: Vec<(String, Option<String>)> =
            members.iter().map(|id| (id.clone(), None)).collect();
        self.leave_members(group_id, &members)
            .into_iter()
            .map(|(_, code)| code)
            .collect()
    }

    /// A LeaveGroup's members, each (member id, group.instance.id), answered as Kafka's
    /// coordinator does: with (the member id to echo, an error code) per member.
    /// - By instance id with no member id: the static member holding it leaves (an
    ///   administrative removal); an unknown instance is UNKNOWN_MEMBER_ID.
    /// - By instance id and member id: FENCED_INSTANCE_ID if another incarnation holds it.
    /// - In a consumer group only classic members leave this way (a consumer-protocol member
    ///   leaves with its own heartbeat): the others are UNKNOWN_MEMBER_ID, as in Kafka.
    ///
    /// A classic group echoes the request's member id; a consumer group echoes the member
    /// id that left (Kafka's two coordinators differ so).
    pub fn leave_members(
        &self,
        group_id: &str,
        members: &[(String, Option<String>)],
    ) -> Vec<(String, i16)> {
        let mut groups = self.groups.lock();
        {
            let mut consumer = self.consumer.lock();
            if let Some(c) = consumer.get_mut(group_id) {
                let resolved: Vec<Result<String, i16>> = members
                    .iter()
                    .map(|(id, instance)| c.classic_leaver(id, instance.as_deref()))
                    .collect();
                let leaving: Vec<String> = resolved.iter().flatten().cloned().collect();
                // Nobody leaving changes nothing (Kafka writes no record then).
                let downgrade = (!leaving.is_empty()
                    && self.consumer_config.migration.allows_downgrade())
                .then(|| c.to_classic_without(&leaving))
                .flatten();
                let answers = members
                    .iter()
                    .zip(resolved)
                    .map(|((asked, _), r)| match r {
                        Ok(id) => {
                            c.leave_member(group_id, &id);
                            (id, 0)
                        }
                        Err(code) => (asked.clone(), code),
                    })
                    .collect();
                if let Some(classic_group) = downgrade {
                    let now = Instant::now();
                    self.downgrade(&mut groups, &mut consumer, group_id, classic_group, now);
                }
                return answers;
            }
        }
        let Some(g) = groups.get_mut(group_id) else {
            return members
                .iter()
                .map(|(id, _)| (id.clone(), UNKNOWN_MEMBER_ID))
                .collect();
        };
        let mut left = 0;
        let answers = members
            .iter()
            .map(|(id, instance)| {
                let target = match (id.is_empty(), instance.as_deref()) {
                    (true, Some(instance)) => g.static_member(instance).ok_or(UNKNOWN_MEMBER_ID),
                    (true, None) => Err(UNKNOWN_MEMBER_ID),
                    // A member id handed out with MEMBER_ID_REQUIRED that never joined.
                    (false, _) if g.pending.remove(id).is_some() => return (id.clone(), 0),
                    (false, Some(instance)) => match g.static_member(instance) {
                        None => Err(UNKNOWN_MEMBER_ID),
                        Some(holder) if holder != *id => Err(FENCED_INSTANCE_ID),
                        Some(holder) => Ok(holder),
                    },
                    (false, None) => Ok(id.clone()),
                };
                let code = match target.map(|t| (g.members.remove(&t), t)) {
                    Ok((Some(m), t)) => {
                        info!(group = group_id, member = %t, "member left");
                        fail_waiters(m);
                        left += 1;
                        0
                    }
                    Ok((None, _)) => UNKNOWN_MEMBER_ID,
                    Err(code) => code,
                };
                (id.clone(), code)
            })
            .collect();
        if left > 0 {
            after_removal(group_id, g, Instant::now());
        }
        answers
    }

    /// Whether `member_id` at `generation` may commit, answered as Kafka's coordinator does:
    /// a standalone commit (generation -1, no member) only to a group with no members; none
    /// while the group waits for its leader's assignment (REBALANCE_IN_PROGRESS); a member of
    /// the current generation may commit while the group prepares a rebalance (an eager
    /// consumer commits before it rejoins); a static member's old incarnation is fenced.
    pub fn validate_commit(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> i16 {
        self.validate_commit_for(group_id, generation, member_id, instance_id, false)
    }

    /// [`Self::validate_commit`] for a TxnOffsetCommit when `transactional` (KIP-447): a
    /// producer without group metadata may commit to any group, and members may commit
    /// while the group completes a rebalance (the offsets only count if the transaction
    /// commits).
    pub fn validate_commit_for(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        transactional: bool,
    ) -> i16 {
        if transactional && generation < 0 && member_id.is_empty() && instance_id.is_none() {
            return 0;
        }
        let groups = self.groups.lock();
        if let Some(c) = self.consumer.lock().get(group_id) {
            if c.fences(instance_id, member_id) {
                return FENCED_INSTANCE_ID;
            }
            // The consumer protocol: the member epoch is the generation (KIP-848).
            return c.validate_member(member_id, generation);
        }
        let Some(g) = groups.get(group_id) else {
            return if generation < 0 {
                0
            } else {
                ILLEGAL_GENERATION
            };
        };
        if generation < 0 && g.state == GroupState::Empty {
            return 0;
        }
        if g.state == GroupState::CompletingRebalance && !transactional {
            return REBALANCE_IN_PROGRESS;
        }
        if generation < 0 && member_id.is_empty() && instance_id.is_none() {
            // Only members commit to a group that has them.
            return UNKNOWN_MEMBER_ID;
        }
        if fenced(g, instance_id, member_id) {
            return FENCED_INSTANCE_ID;
        }
        if !g.members.contains_key(member_id) {
            return UNKNOWN_MEMBER_ID;
        }
        if generation != g.generation {
            return ILLEGAL_GENERATION;
        }
        0
    }

    /// Completes joins at their deadline and expires silent members; returns the records
    /// to write: every group marked dirty that is Stable or Empty (one in the middle of a
    /// rebalance is written when it completes) and the tombstones of deleted groups.
    pub fn tick(&self) -> Vec<GroupWrite> {
        self.tick_at(Instant::now())
    }

    /// [`Self::tick`] as if the time were `now` (tests drive time with it).
    pub fn tick_at(&self, now: Instant) -> Vec<GroupWrite> {
        let mut groups = self.groups.lock();
        self.tick_locked(&mut groups, now)
    }

    /// What a tick writes to `__consumer_offsets`, both kinds of group record, collected
    /// under the classic groups' lock: a conversion between the protocols (which takes it)
    /// cannot fall between them, so a group's new record is always written in the same
    /// round as the other kind's tombstone, and before it.
    pub fn tick_writes(&self) -> TickWrites {
        let mut groups = self.groups.lock();
        let classic = self.tick_locked(&mut groups, Instant::now());
        TickWrites {
            classic,
            consumer: self.consumer_writes(),
            upgraded: std::mem::take(&mut *self.upgraded.lock()),
        }
    }

    fn tick_locked(&self, groups: &mut HashMap<String, Group>, now: Instant) -> Vec<GroupWrite> {
        let mut writes: Vec<GroupWrite> = vec![];
        for (id, g) in groups.iter_mut() {
            // Ids handed out with MEMBER_ID_REQUIRED and never used.
            g.pending.retain(|_, until| *until > now);
            let expired: Vec<String> = g
                .members
                .iter()
                .filter(|(_, m)| {
                    m.join_waiter.is_none()
                        && now.duration_since(m.last_heartbeat) > m.session_timeout
                })
                .map(|(k, _)| k.clone())
                .collect();
            for m in &expired {
                info!(group = %id, member = %m, "member session expired");
                if let Some(member) = g.members.remove(m) {
                    fail_waiters(member);
                }
            }
            if !expired.is_empty() {
                after_removal(id, g, now);
            }
            maybe_complete_join(id, g, now);
            if g.dirty && matches!(g.state, GroupState::Stable | GroupState::Empty) && !g.storing {
                g.dirty = false;
                writes.push((id.clone(), Some(g.record())));
            }
        }
        let mut consumer = self.consumer.lock();
        let mut downgrades = vec![];
        for (id, g) in consumer.iter_mut() {
            let gone = g.expiring(&self.consumer_config_of(id), now);
            if gone.is_empty() {
                continue;
            }
            if self.consumer_config.migration.allows_downgrade() {
                let ids: Vec<String> = gone.iter().map(|(m, _)| m.clone()).collect();
                if let Some(classic_group) = g.to_classic_without(&ids) {
                    downgrades.push((id.clone(), classic_group));
                }
            }
            g.remove_members(id, &gone);
        }
        for (id, classic_group) in downgrades {
            self.downgrade(groups, &mut consumer, &id, classic_group, now);
        }
        // Queued records last, so those of this tick's conversions are among them.
        let mut queued: Vec<GroupWrite> = self.queued.lock().drain(..).collect();
        queued.append(&mut writes);
        queued
    }

    /// The consumer-protocol group records to write: groups changed since their last record,
    /// and tombstones of deleted ones.
    pub fn consumer_writes(&self) -> Vec<ConsumerGroupWrite> {
        let mut writes: Vec<ConsumerGroupWrite> = self
            .consumer_tombstones
            .lock()
            .drain(..)
            .map(|g| (g, None))
            .collect();
        for (id, g) in self.consumer.lock().iter_mut() {
            if let Some(r) = g.take_dirty() {
                writes.push((id.clone(), Some(r)));
            }
        }
        writes
    }

    /// A consumer-protocol group as `__consumer_offsets` recorded it, taken over by this
    /// coordinator (unless it already knows the group).
    pub fn restore_consumer(&self, group_id: &str, record: consumer::ConsumerGroupRecord) {
        let mut groups = self.consumer.lock();
        if groups.contains_key(group_id) {
            return;
        }
        let g = ConsumerGroup::from_record(record, Instant::now());
        info!(
            group = group_id,
            members = g.members.len(),
            state = g.state(),
            "consumer group loaded"
        );
        groups.insert(group_id.to_string(), g);
    }

    /// Drops the membership state of every group `which` names (their coordinator moved).
    pub fn forget_groups(&self, which: impl Fn(&str) -> bool) {
        self.groups.lock().retain(|id, _| !which(id));
        self.consumer.lock().retain(|id, _| !which(id));
        self.consumer_tombstones.lock().retain(|id| !which(id));
        self.queued.lock().retain(|(id, _)| !which(id));
        self.upgraded.lock().retain(|id| !which(id));
    }

    /// Forgets an empty group's membership state. NON_EMPTY_GROUP (68) while it has members,
    /// GROUP_ID_NOT_FOUND (69) when nothing is known of it.
    pub fn remove_group(&self, group_id: &str) -> i16 {
        let mut groups = self.groups.lock();
        let has_offsets = self.offsets.lock().contains_key(group_id);
        {
            let mut consumer = self.consumer.lock();
            match consumer.get(group_id) {
                Some(c) if !c.is_empty() => return 68,
                Some(_) => {
                    consumer.remove(group_id);
                    self.consumer_tombstones.lock().push(group_id.to_string());
                    return 0;
                }
                None => {}
            }
        }
        let code = match groups.get(group_id) {
            Some(g) if !g.members.is_empty() => 68,
            Some(_) => {
                groups.remove(group_id);
                0
            }
            None if has_offsets => 0,
            None => 69,
        };
        if code == 0 {
            self.queued.lock().push((group_id.to_string(), None));
        }
        code
    }

    /// Whether a member of the group currently has `topic` assigned (decoded from the
    /// "consumer" protocol assignment).
    pub fn consumes(&self, group_id: &str, topic: &str) -> bool {
        let groups = self.groups.lock();
        if let Some(c) = self.consumer.lock().get(group_id) {
            return c.subscribes_to(topic);
        }
        let Some(g) = groups.get(group_id) else {
            return false;
        };
        g.members.values().any(|m| {
            super::consumer_assignment(&m.assignment).is_some_and(|a| {
                a.assigned_partitions
                    .iter()
                    .any(|tp| tp.topic.as_str() == topic)
            })
        })
    }

    pub fn list(&self) -> Vec<(String, &'static str, String)> {
        let groups = self.groups.lock();
        let consumer = self.consumer.lock();
        let mut ids: Vec<String> = groups.keys().chain(consumer.keys()).cloned().collect();
        for g in self.offsets.lock().keys() {
            if !ids.contains(g) {
                ids.push(g.clone());
            }
        }
        ids.sort();
        ids.dedup();
        // Share groups' durable starts (`<group>\0share`) are not groups of their own.
        ids.retain(|id| !id.contains('\0'));
        ids.into_iter()
            .map(|id| {
                if let Some(c) = consumer.get(&id) {
                    return (id, c.state(), "consumer".to_string());
                }
                let (state, pt) = groups.get(&id).map_or(("Empty", String::new()), |g| {
                    (g.state.name(), g.protocol_type.clone().unwrap_or_default())
                });
                (id, state, pt)
            })
            .collect()
    }

    /// Rebalances completed by the groups held here (a group unloaded takes its count away).
    pub fn completed_rebalances(&self) -> u64 {
        self.groups
            .lock()
            .values()
            .map(|g| g.rebalances)
            .sum::<u64>()
            + self
                .consumer
                .lock()
                .values()
                .map(|g| g.rebalances)
                .sum::<u64>()
    }

    pub fn describe(&self, group_id: &str) -> Option<GroupDescription> {
        let groups = self.groups.lock();
        let Some(g) = groups.get(group_id) else {
            drop(groups);
            return self
                .describe_consumer_group(group_id)
                .map(|v| v.classic(group_id));
        };
        Some(GroupDescription {
            group_id: group_id.to_string(),
            state: g.state.name(),
            protocol_type: g.protocol_type.clone().unwrap_or_default(),
            protocol: g.protocol.clone().unwrap_or_default(),
            generation: g.generation,
            members: g
                .members
                .iter()
                .map(|(id, m)| {
                    let meta = g.metadata_of(m);
                    (
                        id.clone(),
                        m.instance_id.clone(),
                        m.client_id.clone(),
                        m.host.clone(),
                        meta,
                        m.assignment.clone(),
                    )
                })
                .collect(),
        })
    }
}

/// As Kafka's `selectProtocol`: of the protocols every member supports, each member votes
/// for the one it lists first, and the most votes win (ties: the order the leader lists them).
fn select_protocol(g: &Group) -> Option<String> {
    let leader = g.leader.as_ref().and_then(|l| g.members.get(l))?;
    let candidates: Vec<&str> = leader
        .protocols
        .iter()
        .map(|(p, _)| p.as_str())
        .filter(|p| {
            g.members
                .values()
                .all(|m| m.protocols.iter().any(|(q, _)| q == p))
        })
        .collect();
    let votes = |p: &str| {
        g.members
            .values()
            .filter(|m| {
                m.protocols
                    .iter()
                    .map(|(q, _)| q.as_str())
                    .find(|q| candidates.contains(q))
                    == Some(p)
            })
            .count()
    };
    let mut best: Option<(&str, usize)> = None;
    for p in &candidates {
        let v = votes(p);
        if best.is_none_or(|(_, bv)| v > bv) {
            best = Some((p, v));
        }
    }
    best.map(|(p, _)| p.to_string())
}

/// Whether `instance_id` belongs to a member other than `member_id`: the request comes from
/// an older incarnation of a static member.
fn fenced(g: &Group, instance_id: Option<&str>, member_id: &str) -> bool {
    let Some(instance) = instance_id else {
        return false;
    };
    g.members
        .iter()
        .any(|(id, m)| m.instance_id.as_deref() == Some(instance) && id != member_id)
}

fn fail_waiters(m: Member) {
    if let Some(w) = m.join_waiter {
        let _ = w.send(JoinOutcome {
            error: UNKNOWN_MEMBER_ID,
            generation: -1,
            ..Default::default()
        });
    }
    if let Some(w) = m.sync_waiter {
        let _ = w.send(SyncOutcome {
            error: UNKNOWN_MEMBER_ID,
            ..Default::default()
        });
    }
}

fn prepare_rebalance(g: &mut Group, now: Instant) {
    let timeout = g
        .members
        .values()
        .map(|m| m.rebalance_timeout)
        .max()
        .unwrap_or(Duration::from_secs(60));
    g.state = GroupState::PreparingRebalance;
    g.join_deadline = now + timeout;
    g.initial_join = false;
    g.storing = false;
    for m in g.members.values_mut() {
        if let Some(w) = m.sync_waiter.take() {
            let _ = w.send(SyncOutcome {
                error: REBALANCE_IN_PROGRESS,
                ..Default::default()
            });
        }
    }
}

fn after_removal(id: &str, g: &mut Group, now: Instant) {
    if g.members.is_empty() {
        g.state = GroupState::Empty;
        g.generation += 1;
        g.leader = None;
        g.protocol = None;
        g.storing = false;
        g.dirty = true;
        return;
    }
    match g.state {
        GroupState::Stable | GroupState::CompletingRebalance => prepare_rebalance(g, now),
        _ => {}
    }
    maybe_complete_join(id, g, now);
}

fn maybe_complete_join(id: &str, g: &mut Group, now: Instant) {
    if g.state != GroupState::PreparingRebalance {
        return;
    }
    let all_joined = g.members.values().all(|m| m.join_waiter.is_some());
    let due = now >= g.join_deadline;
    if !(due || (all_joined && !g.initial_join)) {
        return;
    }
    // Members that did not rejoin in time are out.
    let gone: Vec<String> = g
        .members
        .iter()
        .filter(|(_, m)| m.join_waiter.is_none())
        .map(|(k, _)| k.clone())
        .collect();
    for m in gone {
        if let Some(member) = g.members.remove(&m) {
            fail_waiters(member);
        }
    }
    g.generation += 1;
    g.initial_join = false;
    g.storing = false;
    if g.members.is_empty() {
        g.state = GroupState::Empty;
        g.leader = None;
        g.protocol = None;
        g.dirty = true;
        return;
    }
    let leader = match &g.leader {
        Some(l) if g.members.contains_key(l) => l.clone(),
        _ => g
            .members
            .iter()
            .min_by_key(|(_, m)| m.joined_at)
            .map(|(id, _)| id.clone())
            .unwrap_or_default(),
    };
    g.leader = Some(leader);
    g.protocol = select_protocol(g);
    g.state = GroupState::CompletingRebalance;
    g.rebalances += 1;
    info!(group = id, generation = g.generation, members = g.members.len(), protocol = ?g.protocol, "rebalance: join complete");
    let ids: Vec<String> = g.members.keys().cloned().collect();
    for m in ids {
        complete_join_for(g, &m);
    }
}

/// Sends the JoinGroup answer to one waiting member.
fn complete_join_for(g: &mut Group, member_id: &str) {
    let leader = g.leader.clone().unwrap_or_default();
    let members: Vec<(String, Option<String>, Bytes)> = if leader == member_id {
        g.members
            .iter()
            .map(|(id, m)| (id.clone(), m.instance_id.clone(), g.metadata_of(m)))
            .collect()
    } else {
        vec![]
    };
    // A leader answered outside a rebalance (a static leader back in a stable group) keeps
    // the group's assignment.
    let skip_assignment = leader == member_id && g.state == GroupState::Stable;
    let outcome = JoinOutcome {
        error: 0,
        generation: g.generation,
        protocol_type: g.protocol_type.clone(),
        protocol_name: g.protocol.clone(),
        leader,
        member_id: member_id.to_string(),
        members,
        skip_assignment,
    };
    if let Some(w) = g
        .members
        .get_mut(member_id)
        .and_then(|m| m.join_waiter.take())
    {
        let _ = w.send(outcome);
    }
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
