//! Consumer groups of the next-generation protocol (KIP-848, group type "consumer"): the
//! broker assigns partitions and members converge on the assignment heartbeat by heartbeat.
//!
//! ```text
//!   member heartbeat --> subscriptions or topics changed? --> group epoch + 1, and a new
//!                        target assignment (uniform or range) for that epoch
//!                    --> reconcile this member towards its target:
//!     Stable --(target moved on)--> it must give partitions up first? UnrevokedPartitions
//!                                   (same member epoch, only the partitions it keeps)
//!            --(nothing to give up)--> member epoch = target epoch, with every target
//!                                   partition no other member still holds; the rest wait
//!                                   (UnreleasedPartitions) until their owner lets them go
//! ```
//!
//! A partition belongs to one member at a time: it is handed out only once the member that
//! had it reported, in a heartbeat, that it no longer owns it. Members that stop
//! heartbeating for `group.consumer.session.timeout.ms`, or do not give partitions up within
//! their rebalance timeout, are removed. A static member (`group.instance.id`) that leaves
//! with epoch -2 keeps its place and its partitions for the session timeout; back with a new
//! member id, it gets the same assignment and the others notice nothing.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tracing::info;
use uuid::Uuid;

/// Partitions by topic id.
pub type Assignment = BTreeMap<Uuid, BTreeSet<i32>>;

/// The server-side assignors (`group.consumer.assignors`); the first is the default.
pub const ASSIGNORS: [&str; 2] = ["uniform", "range"];

use super::state::{
    FENCED_INSTANCE_ID, ILLEGAL_GENERATION, INCONSISTENT_GROUP_PROTOCOL, MEMBER_ID_REQUIRED,
    REBALANCE_IN_PROGRESS, UNKNOWN_MEMBER_ID,
};

const INVALID_REQUEST: i16 = 42;
const GROUP_ID_NOT_FOUND: i16 = 69;
const FENCED_MEMBER_EPOCH: i16 = 110;
const UNRELEASED_INSTANCE_ID: i16 = 111;
const UNSUPPORTED_ASSIGNOR: i16 = 112;
pub(super) const STALE_MEMBER_EPOCH: i16 = 113;
const INVALID_REGULAR_EXPRESSION: i16 = 128;

/// The member epoch of a leave, and of a static member's temporary leave.
pub(super) const LEAVE_EPOCH: i32 = -1;
const STATIC_LEAVE_EPOCH: i32 = -2;

/// What the coordinator needs of the cluster's topics.
pub trait TopicSource {
    /// The id and partition count of a topic that exists.
    fn lookup(&self, name: &str) -> Option<(Uuid, i32)>;
    /// Every topic a regular expression may match (internal topics are not among them).
    fn names(&self) -> Vec<String>;
}

/// No topics at all (for callers that have no cluster view, such as tests of the classic
/// protocol).
pub struct NoTopics;

impl TopicSource for NoTopics {
    fn lookup(&self, _name: &str) -> Option<(Uuid, i32)> {
        None
    }
    fn names(&self) -> Vec<String> {
        vec![]
    }
}

/// Timing of consumer groups (`group.consumer.session.timeout.ms`,
/// `group.consumer.heartbeat.interval.ms`) and which conversions between the two protocols'
/// groups are allowed (`group.consumer.migration.policy`).
#[derive(Debug, Clone, Copy)]
pub struct ConsumerGroupConfig {
    pub session_timeout: Duration,
    pub heartbeat_interval: Duration,
    pub migration: MigrationPolicy,
}

impl Default for ConsumerGroupConfig {
    fn default() -> Self {
        Self {
            session_timeout: Duration::from_secs(45),
            heartbeat_interval: Duration::from_secs(5),
            migration: MigrationPolicy::Bidirectional,
        }
    }
}

/// Kafka's `group.consumer.migration.policy` (KIP-848 online migration): whether a classic
/// group with members becomes a consumer group at its first consumer-protocol member
/// (upgrade), and whether a consumer group whose last consumer-protocol member leaves
/// becomes a classic group again (downgrade).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MigrationPolicy {
    Disabled,
    Upgrade,
    Downgrade,
    Bidirectional,
}

impl MigrationPolicy {
    /// The policy a setting names, in any case (Kafka's values are `disabled`, `upgrade`,
    /// `downgrade` and `bidirectional`).
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "disabled" => Some(Self::Disabled),
            "upgrade" => Some(Self::Upgrade),
            "downgrade" => Some(Self::Downgrade),
            "bidirectional" => Some(Self::Bidirectional),
            _ => None,
        }
    }

    pub fn allows_upgrade(self) -> bool {
        matches!(self, Self::Upgrade | Self::Bidirectional)
    }

    pub fn allows_downgrade(self) -> bool {
        matches!(self, Self::Downgrade | Self::Bidirectional)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemberState {
    Stable,
    /// Told to give up partitions; keeps its epoch until it reports they are gone.
    UnrevokedPartitions,
    /// At the target epoch, waiting for partitions other members still hold.
    UnreleasedPartitions,
}

/// A ConsumerGroupHeartbeat, decoded. `None` fields did not change since the last one.
#[derive(Debug, Clone, Default)]
pub struct Heartbeat {
    pub group_id: String,
    pub member_id: String,
    pub member_epoch: i32,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    /// -1: unchanged.
    pub rebalance_timeout_ms: i32,
    pub topics: Option<Vec<String>>,
    pub regex: Option<String>,
    pub assignor: Option<String>,
    /// The partitions the member owns now.
    pub owned: Option<Assignment>,
    pub client_id: String,
    pub host: String,
    /// v1+ (KIP-1082): the member names itself.
    pub version: i16,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeartbeatOutcome {
    pub error: i16,
    pub message: Option<String>,
    pub member_id: String,
    pub member_epoch: i32,
    pub heartbeat_interval_ms: i32,
    /// The member's whole assignment, when it changed or the request was a full one.
    pub assignment: Option<Assignment>,
}

impl HeartbeatOutcome {
    pub(super) fn error(code: i16, message: impl Into<String>, req: &Heartbeat) -> Self {
        Self {
            error: code,
            message: Some(message.into()),
            member_id: req.member_id.clone(),
            member_epoch: req.member_epoch,
            ..Default::default()
        }
    }
}

/// What a member of the classic protocol (JoinGroup, SyncGroup, Heartbeat) in a consumer
/// group keeps of its own: during an online upgrade, classic and consumer-protocol members
/// share one group and one assignment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassicMember {
    pub session_timeout_ms: u64,
    /// (protocol name, subscription metadata) as its last JoinGroup listed them.
    pub protocols: Vec<(String, Vec<u8>)>,
}

/// A member of a group converted between the protocols: of a classic group becoming a
/// consumer group, or of a consumer group becoming classic again.
#[derive(Debug, Clone)]
pub(super) struct ClassicSeed {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub protocols: Vec<(String, Bytes)>,
    /// Its subscription for the group's protocol, and its assignment.
    pub subscription: Bytes,
    pub assignment: Bytes,
}

/// Partitions by topic name.
type NamedPartitions = Vec<(String, Vec<i32>)>;

/// The topics a classic consumer subscribes to and the partitions it says it owns (v1+ of
/// the consumer protocol's subscription), or None if `metadata` is not one.
fn decode_subscription(metadata: &[u8]) -> Option<(Vec<String>, NamedPartitions)> {
    let s = super::consumer_subscription(metadata)?;
    Some((
        s.topics.iter().map(|t| t.to_string()).collect(),
        s.owned_partitions
            .iter()
            .map(|tp| (tp.topic.to_string(), tp.partitions.clone()))
            .collect(),
    ))
}

/// The partitions a classic assignment names, by topic id (topics that no longer exist are
/// left out).
fn decode_assignment(bytes: &[u8], topics: &dyn TopicSource) -> Assignment {
    match super::consumer_assignment(bytes) {
        Some(a) => by_id(
            a.assigned_partitions
                .iter()
                .map(|tp| (tp.topic.to_string(), tp.partitions.clone())),
            topics,
        ),
        None => Assignment::new(),
    }
}

/// Partitions named by topic, by topic id (unknown topics and partitions left out).
fn by_id(named: impl Iterator<Item = (String, Vec<i32>)>, topics: &dyn TopicSource) -> Assignment {
    let mut out = Assignment::new();
    for (name, ps) in named {
        if let Some((id, n)) = topics.lookup(&name) {
            let ps: BTreeSet<i32> = ps.into_iter().filter(|p| (0..n).contains(p)).collect();
            if !ps.is_empty() {
                out.entry(id).or_default().extend(ps);
            }
        }
    }
    out
}

#[derive(Debug, Clone)]
pub(super) struct Member {
    /// Set for a member of the classic protocol.
    classic: Option<ClassicMember>,
    instance_id: Option<String>,
    rack_id: Option<String>,
    client_id: String,
    host: String,
    topics: Vec<String>,
    regex: Option<(String, regex::Regex)>,
    assignor: Option<String>,
    rebalance_timeout: Duration,
    epoch: i32,
    previous_epoch: i32,
    state: MemberState,
    /// What the member may own now.
    assigned: Assignment,
    /// What it was told to give up and has not yet reported gone.
    revoking: Assignment,
    /// The topics it subscribes to that exist (names and regex matches).
    resolved: BTreeSet<String>,
    last_heartbeat: Instant,
    revoke_deadline: Option<Instant>,
}

impl Member {
    /// A member that just joined: epoch 0, nothing assigned.
    fn new(
        instance_id: Option<String>,
        client_id: &str,
        host: &str,
        rebalance_timeout: Duration,
        now: Instant,
    ) -> Self {
        Member {
            classic: None,
            instance_id,
            rack_id: None,
            client_id: client_id.to_string(),
            host: host.to_string(),
            topics: vec![],
            regex: None,
            assignor: None,
            rebalance_timeout,
            epoch: 0,
            previous_epoch: 0,
            state: MemberState::Stable,
            assigned: Assignment::new(),
            revoking: Assignment::new(),
            resolved: BTreeSet::new(),
            last_heartbeat: now,
            revoke_deadline: None,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub(super) struct ConsumerGroup {
    epoch: i32,
    assignment_epoch: i32,
    target: BTreeMap<String, Assignment>,
    pub(super) members: BTreeMap<String, Member>,
    /// The topics some member subscribes to, as last seen: name -> (id, partitions).
    topics: BTreeMap<String, (Uuid, i32)>,
    assignor: String,
    /// Target assignments computed here.
    pub(super) rebalances: u64,
    /// Changed since `__consumer_offsets` last recorded it.
    dirty: bool,
}

/// What `__consumer_offsets` keeps of a consumer group (under its own key, see
/// `record::consumer_group_key`): enough for a new coordinator to carry on with the same
/// epochs and assignments, so members keep heartbeating instead of rejoining.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerGroupRecord {
    pub epoch: i32,
    pub assignment_epoch: i32,
    pub assignor: String,
    pub topics: Vec<(String, Uuid, i32)>,
    pub members: Vec<ConsumerMemberRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerMemberRecord {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub host: String,
    pub topics: Vec<String>,
    pub regex: Option<String>,
    pub assignor: Option<String>,
    pub rebalance_timeout_ms: u64,
    pub epoch: i32,
    pub previous_epoch: i32,
    pub state: MemberState,
    pub classic: Option<ClassicMember>,
    pub resolved: Vec<String>,
    pub assigned: Assignment,
    pub revoking: Assignment,
    pub target: Assignment,
}

/// One member as ConsumerGroupDescribe shows it.
#[derive(Debug, Clone)]
pub struct MemberView {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub member_epoch: i32,
    pub client_id: String,
    pub host: String,
    pub topics: Vec<String>,
    pub regex: Option<String>,
    pub assigned: Assignment,
    pub target: Assignment,
    /// 0: a classic member, 1: the consumer protocol (ConsumerGroupDescribe's member type).
    pub member_type: i8,
    /// A classic member's subscription metadata (its first protocol's).
    pub classic_metadata: Option<Bytes>,
}

/// A consumer group as ConsumerGroupDescribe shows it.
#[derive(Debug, Clone)]
pub struct ConsumerGroupView {
    pub state: &'static str,
    pub epoch: i32,
    pub assignment_epoch: i32,
    pub assignor: String,
    /// Names of the topic ids the assignments use, as the group last saw them.
    pub topic_names: BTreeMap<Uuid, String>,
    pub members: Vec<MemberView>,
}

/// Checks what a heartbeat must carry (Kafka's `throwIfConsumerGroupHeartbeatRequestIsInvalid`).
pub(super) fn validate(req: &Heartbeat) -> Result<(), (i16, String)> {
    let bad = |m: &str| Err((INVALID_REQUEST, m.to_string()));
    if req.group_id.is_empty() {
        return bad("GroupId can't be empty.");
    }
    if req.instance_id.as_deref() == Some("") {
        return bad("InstanceId can't be empty.");
    }
    if req.rack_id.as_deref() == Some("") {
        return bad("RackId can't be empty.");
    }
    if req.member_epoch < STATIC_LEAVE_EPOCH {
        return bad("MemberEpoch is invalid.");
    }
    if req.member_id.is_empty() && (req.version >= 1 || req.member_epoch != 0) {
        return bad("MemberId can't be empty.");
    }
    if req.member_epoch == 0 {
        if req.rebalance_timeout_ms <= 0 {
            return bad("RebalanceTimeoutMs must be provided in first request.");
        }
        if req.owned.as_ref().is_none_or(|o| !o.is_empty()) {
            return bad("TopicPartitions must be empty when (re-)joining.");
        }
        if req.topics.is_none() && req.regex.is_none() {
            return bad(
                "SubscribedTopicNames or SubscribedTopicRegex must be set in first request.",
            );
        }
    }
    if req.member_epoch == STATIC_LEAVE_EPOCH && req.instance_id.is_none() {
        return bad("InstanceId can't be null when leaving with member epoch -2.");
    }
    if let Some(a) = &req.assignor {
        if !ASSIGNORS.contains(&a.as_str()) {
            return Err((
                UNSUPPORTED_ASSIGNOR,
                format!(
                    "ServerAssignor {a} is not supported. Supported assignors: uniform, range."
                ),
            ));
        }
    }
    Ok(())
}

/// A subscription pattern as Kafka reads it: the whole topic name must match.
fn compile(pattern: &str) -> Result<regex::Regex, (i16, String)> {
    regex::Regex::new(&format!("^(?:{pattern})$")).map_err(|e| {
        (
            INVALID_REGULAR_EXPRESSION,
            format!("SubscribedTopicRegex `{pattern}` is not a valid regular expression: {e}"),
        )
    })
}

fn contains(a: &Assignment, topic: &Uuid, p: i32) -> bool {
    a.get(topic).is_some_and(|s| s.contains(&p))
}

fn intersects(a: &Assignment, b: &Assignment) -> bool {
    a.iter()
        .any(|(t, ps)| ps.iter().any(|p| contains(b, t, *p)))
}

fn is_subset(a: &Assignment, of: &Assignment) -> bool {
    a.iter()
        .all(|(t, ps)| ps.iter().all(|p| contains(of, t, *p)))
}

fn add(a: &mut Assignment, topic: Uuid, p: i32) {
    a.entry(topic).or_default().insert(p);
}

fn intersection(a: &Assignment, b: &Assignment) -> Assignment {
    let mut out = Assignment::new();
    for (t, ps) in a {
        for p in ps {
            if contains(b, t, *p) {
                add(&mut out, *t, *p);
            }
        }
    }
    out
}

impl ConsumerGroup {
    pub(super) fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The record to write if the group changed since the last one.
    pub(super) fn take_dirty(&mut self) -> Option<ConsumerGroupRecord> {
        if !std::mem::take(&mut self.dirty) {
            return None;
        }
        Some(ConsumerGroupRecord {
            epoch: self.epoch,
            assignment_epoch: self.assignment_epoch,
            assignor: self.assignor.clone(),
            topics: self
                .topics
                .iter()
                .map(|(n, (id, p))| (n.clone(), *id, *p))
                .collect(),
            members: self
                .members
                .iter()
                .map(|(id, m)| ConsumerMemberRecord {
                    member_id: id.clone(),
                    instance_id: m.instance_id.clone(),
                    rack_id: m.rack_id.clone(),
                    client_id: m.client_id.clone(),
                    host: m.host.clone(),
                    topics: m.topics.clone(),
                    regex: m.regex.as_ref().map(|(s, _)| s.clone()),
                    assignor: m.assignor.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout.as_millis() as u64,
                    epoch: m.epoch,
                    previous_epoch: m.previous_epoch,
                    state: m.state,
                    classic: m.classic.clone(),
                    resolved: m.resolved.iter().cloned().collect(),
                    assigned: m.assigned.clone(),
                    revoking: m.revoking.clone(),
                    target: self.target.get(id).cloned().unwrap_or_default(),
                })
                .collect(),
        })
    }

    /// A group as `__consumer_offsets` recorded it; every member gets a fresh session (and a
    /// fresh rebalance timeout for partitions it still has to give up).
    pub(super) fn from_record(r: ConsumerGroupRecord, now: Instant) -> Self {
        let mut g = ConsumerGroup {
            epoch: r.epoch,
            assignment_epoch: r.assignment_epoch,
            assignor: r.assignor,
            topics: r
                .topics
                .into_iter()
                .map(|(n, id, p)| (n, (id, p)))
                .collect(),
            ..Default::default()
        };
        for m in r.members {
            let rebalance_timeout = Duration::from_millis(m.rebalance_timeout_ms);
            g.target.insert(m.member_id.clone(), m.target);
            g.members.insert(
                m.member_id,
                Member {
                    classic: m.classic,
                    instance_id: m.instance_id,
                    rack_id: m.rack_id,
                    client_id: m.client_id,
                    host: m.host,
                    topics: m.topics,
                    regex: m.regex.and_then(|s| compile(&s).ok().map(|re| (s, re))),
                    assignor: m.assignor,
                    rebalance_timeout,
                    epoch: m.epoch,
                    previous_epoch: m.previous_epoch,
                    state: m.state,
                    revoke_deadline: (m.state == MemberState::UnrevokedPartitions)
                        .then(|| now + rebalance_timeout),
                    assigned: m.assigned,
                    revoking: m.revoking,
                    resolved: m.resolved.into_iter().collect(),
                    last_heartbeat: now,
                },
            );
        }
        g
    }

    pub(super) fn state(&self) -> &'static str {
        if self.members.is_empty() {
            "Empty"
        } else if self.epoch > self.assignment_epoch {
            "Assigning"
        } else if self
            .members
            .values()
            .any(|m| m.epoch != self.assignment_epoch || m.state != MemberState::Stable)
        {
            "Reconciling"
        } else {
            "Stable"
        }
    }

    fn assigned_of(&self, id: &str) -> Assignment {
        self.members
            .get(id)
            .map(|m| m.assigned.clone())
            .unwrap_or_default()
    }

    /// Whether a member subscribes to `topic`.
    pub(super) fn subscribes_to(&self, topic: &str) -> bool {
        self.members.values().any(|m| m.resolved.contains(topic))
    }

    /// The error an offset commit or fetch by `member_id` at `epoch` gets (0: allowed). A
    /// commit without a member (the admin client, a consumer without a group) only when the
    /// group has no members.
    pub(super) fn validate_member(&self, member_id: &str, epoch: i32) -> i16 {
        if epoch < 0 && member_id.is_empty() {
            return if self.members.is_empty() {
                0
            } else {
                UNKNOWN_MEMBER_ID
            };
        }
        match self.members.get(member_id) {
            None => UNKNOWN_MEMBER_ID,
            // A classic member knows generations, not member epochs.
            Some(m) if m.epoch != epoch && m.classic.is_some() => ILLEGAL_GENERATION,
            Some(m) if m.epoch != epoch => STALE_MEMBER_EPOCH,
            Some(_) => 0,
        }
    }

    pub(super) fn heartbeat(
        &mut self,
        group_id: &str,
        req: &Heartbeat,
        topics: &dyn TopicSource,
        config: &ConsumerGroupConfig,
        now: Instant,
    ) -> HeartbeatOutcome {
        if req.member_epoch == LEAVE_EPOCH || req.member_epoch == STATIC_LEAVE_EPOCH {
            return self.leave(group_id, req);
        }
        let regex = match req.regex.as_deref().filter(|r| !r.is_empty()) {
            Some(r) => match compile(r) {
                Ok(re) => Some((r.to_string(), re)),
                Err((code, m)) => return HeartbeatOutcome::error(code, m, req),
            },
            None => None,
        };
        let mut member_id = req.member_id.clone();
        let mut changed = false;
        if req.member_epoch == 0 {
            if member_id.is_empty() {
                member_id = Uuid::new_v4().simple().to_string();
            }
            if let Some(instance) = &req.instance_id {
                let holder = self
                    .members
                    .iter()
                    .find(|(_, m)| m.instance_id.as_ref() == Some(instance))
                    .map(|(id, m)| (id.clone(), m.epoch));
                match holder {
                    Some((old, epoch)) if old != member_id && epoch != STATIC_LEAVE_EPOCH => {
                        return HeartbeatOutcome::error(
                            UNRELEASED_INSTANCE_ID,
                            format!("Static member {old} with instance id {instance} is still active; it must leave first."),
                            req,
                        );
                    }
                    Some((old, epoch)) if old == member_id && epoch == STATIC_LEAVE_EPOCH => {
                        // Back under its own member id: its place as it left it.
                        if let Some(m) = self.members.get_mut(&old) {
                            m.epoch = m.previous_epoch.max(0);
                            self.dirty = true;
                        }
                    }
                    Some((old, _)) if old != member_id => {
                        // A static member back in its place: it takes over the old member's
                        // epoch and partitions; nothing changes for the others.
                        self.replace_static(group_id, instance, &old, &member_id, now);
                    }
                    _ => {}
                }
            }
            if !self.members.contains_key(&member_id) {
                self.members.insert(
                    member_id.clone(),
                    // The rebalance timeout is set from the request just below.
                    Member::new(
                        req.instance_id.clone(),
                        &req.client_id,
                        &req.host,
                        Duration::ZERO,
                        now,
                    ),
                );
                info!(group = group_id, member = %member_id, client = %req.client_id, "member joined");
                changed = true;
            }
        } else {
            let Some(m) = self.members.get(&member_id) else {
                return HeartbeatOutcome::error(
                    UNKNOWN_MEMBER_ID,
                    format!("Member {member_id} is not a member of group {group_id}."),
                    req,
                );
            };
            let lost_response = req.member_epoch == m.previous_epoch
                && req
                    .owned
                    .as_ref()
                    .is_some_and(|o| is_subset(o, &m.assigned));
            if req.member_epoch != m.epoch && !lost_response {
                return HeartbeatOutcome::error(
                    FENCED_MEMBER_EPOCH,
                    format!(
                        "The member epoch {} does not match the expected {}.",
                        req.member_epoch, m.epoch
                    ),
                    req,
                );
            }
        }
        let Some(m) = self.members.get_mut(&member_id) else {
            return HeartbeatOutcome::error(UNKNOWN_MEMBER_ID, "member vanished", req);
        };
        m.last_heartbeat = now;
        if req.member_epoch == 0 {
            m.client_id = req.client_id.clone();
            m.host = req.host.clone();
        }
        if req.rebalance_timeout_ms > 0 {
            m.rebalance_timeout = Duration::from_millis(req.rebalance_timeout_ms as u64);
        }
        if req.rack_id.is_some() {
            m.rack_id = req.rack_id.clone();
        }
        if let Some(t) = &req.topics {
            let mut t = t.clone();
            t.sort();
            t.dedup();
            if t != m.topics {
                m.topics = t;
                changed = true;
            }
        }
        if req.regex.is_some() {
            let old = m.regex.as_ref().map(|(s, _)| s.as_str());
            if old != regex.as_ref().map(|(s, _)| s.as_str()) {
                m.regex = regex;
                changed = true;
            }
        }
        if req.assignor.is_some() && req.assignor != m.assignor {
            m.assignor = req.assignor.clone();
            changed = true;
        }
        let before = m.assigned.clone();
        if self.refresh_topics(topics, Some(&member_id)) {
            changed = true;
        }
        if changed {
            self.bump(group_id);
        }
        let state_before = (m_epoch_state(self, &member_id), before.clone());
        self.reconcile(group_id, &member_id, req.owned.as_ref(), now);
        if (
            m_epoch_state(self, &member_id),
            self.assigned_of(&member_id),
        ) != state_before
        {
            self.dirty = true;
        }
        let Some(m) = self.members.get(&member_id) else {
            return HeartbeatOutcome::error(UNKNOWN_MEMBER_ID, "member vanished", req);
        };
        let full = req.rebalance_timeout_ms > 0
            && (req.topics.is_some() || req.regex.is_some())
            && req.owned.is_some();
        HeartbeatOutcome {
            error: 0,
            message: None,
            member_id,
            member_epoch: m.epoch,
            heartbeat_interval_ms: config.heartbeat_interval.as_millis().min(i32::MAX as u128)
                as i32,
            assignment: (req.member_epoch == 0 || full || m.assigned != before)
                .then(|| m.assigned.clone()),
        }
    }

    fn leave(&mut self, group_id: &str, req: &Heartbeat) -> HeartbeatOutcome {
        let Some(m) = self.members.get_mut(&req.member_id) else {
            return HeartbeatOutcome::error(
                UNKNOWN_MEMBER_ID,
                format!(
                    "Member {} is not a member of group {group_id}.",
                    req.member_id
                ),
                req,
            );
        };
        if req.member_epoch == STATIC_LEAVE_EPOCH {
            // Keeps its place and partitions for the session timeout.
            if m.epoch != STATIC_LEAVE_EPOCH {
                m.previous_epoch = m.epoch;
            }
            m.epoch = STATIC_LEAVE_EPOCH;
            self.dirty = true;
            info!(group = group_id, member = %req.member_id, "static member left for now");
        } else {
            self.remove_member(group_id, &req.member_id.clone(), "left");
        }
        HeartbeatOutcome {
            member_id: req.member_id.clone(),
            member_epoch: req.member_epoch,
            ..Default::default()
        }
    }

    fn remove_member(&mut self, group_id: &str, member_id: &str, why: &str) {
        if self.members.remove(member_id).is_some() {
            self.target.remove(member_id);
            info!(group = group_id, member = member_id, why, "member removed");
            self.bump(group_id);
        }
    }

    /// Re-reads the subscribed topics; true if any member's topics or their partition
    /// counts changed.
    /// `current` (the member heartbeating) has its regex matched again, against the topics
    /// `source` shows its principal; the others keep the matches their own heartbeats made,
    /// less topics that are gone.
    fn refresh_topics(&mut self, source: &dyn TopicSource, current: Option<&str>) -> bool {
        let all = match current.and_then(|id| self.members.get(id)) {
            Some(m) if m.regex.is_some() => source.names(),
            _ => vec![],
        };
        let mut topics = BTreeMap::new();
        let mut changed = false;
        for (id, m) in self.members.iter_mut() {
            let mut wanted: BTreeSet<String> = m.topics.iter().cloned().collect();
            if let Some((_, re)) = &m.regex {
                if current == Some(id.as_str()) {
                    wanted.extend(all.iter().filter(|n| re.is_match(n)).cloned());
                } else {
                    wanted.extend(m.resolved.iter().cloned());
                }
            }
            let resolved: BTreeSet<String> = wanted
                .into_iter()
                .filter(|t| match source.lookup(t) {
                    Some(found) => {
                        topics.insert(t.clone(), found);
                        true
                    }
                    None => false,
                })
                .collect();
            if resolved != m.resolved {
                m.resolved = resolved;
                changed = true;
            }
        }
        if topics != self.topics {
            self.topics = topics;
            changed = true;
        }
        changed
    }

    /// A new group epoch and its target assignment.
    fn bump(&mut self, group_id: &str) {
        self.epoch += 1;
        self.dirty = true;
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for m in self.members.values() {
            if let Some(a) = &m.assignor {
                *votes.entry(a.as_str()).or_default() += 1;
            }
        }
        self.assignor = votes
            .into_iter()
            .max_by_key(|(a, n)| (*n, std::cmp::Reverse(ASSIGNORS.iter().position(|x| x == a))))
            .map_or(ASSIGNORS[0], |(a, _)| a)
            .to_string();
        let subscriptions: BTreeMap<String, BTreeSet<String>> = self
            .members
            .iter()
            .map(|(id, m)| (id.clone(), m.resolved.clone()))
            .collect();
        self.target = if self.assignor == "range" {
            range(&subscriptions, &self.topics)
        } else {
            uniform(&subscriptions, &self.topics, &self.target)
        };
        self.assignment_epoch = self.epoch;
        self.rebalances += 1;
        info!(
            group = group_id,
            epoch = self.epoch,
            members = self.members.len(),
            assignor = %self.assignor,
            "target assignment"
        );
    }

    /// Partitions held (assigned or being revoked) by members other than `except`.
    fn held_by_others(&self, except: &str) -> HashSet<(Uuid, i32)> {
        self.members
            .iter()
            .filter(|(id, _)| id.as_str() != except)
            .flat_map(|(_, m)| m.assigned.iter().chain(m.revoking.iter()))
            .flat_map(|(t, ps)| ps.iter().map(move |p| (*t, *p)))
            .collect()
    }

    /// Moves `member_id` one step towards its target (Kafka's CurrentAssignmentBuilder).
    fn reconcile(
        &mut self,
        group_id: &str,
        member_id: &str,
        owned: Option<&Assignment>,
        now: Instant,
    ) {
        let held = self.held_by_others(member_id);
        let target = self.target.get(member_id).cloned().unwrap_or_default();
        let target_epoch = self.assignment_epoch;
        let Some(m) = self.members.get_mut(member_id) else {
            return;
        };
        if m.epoch < 0 {
            return;
        }
        if m.state == MemberState::UnrevokedPartitions {
            // Still owns (or did not say) what it must give up.
            if owned.is_none_or(|o| intersects(o, &m.revoking)) {
                return;
            }
            m.revoking.clear();
            m.revoke_deadline = None;
            m.state = MemberState::Stable;
        }
        // Caught up, unless it lost partitions of its target (a static member restarted
        // under a new member id owns nothing yet): those it gets back.
        if m.epoch == target_epoch
            && m.state == MemberState::Stable
            && is_subset(&target, &m.assigned)
        {
            return;
        }
        let mut kept = Assignment::new();
        let mut revoke = Assignment::new();
        for (t, ps) in &m.assigned {
            for p in ps {
                if contains(&target, t, *p) {
                    add(&mut kept, *t, *p);
                } else {
                    add(&mut revoke, *t, *p);
                }
            }
        }
        let mut unreleased = false;
        let mut next = kept.clone();
        for (t, ps) in &target {
            for p in ps {
                if contains(&kept, t, *p) {
                    continue;
                }
                if held.contains(&(*t, *p)) {
                    unreleased = true;
                } else {
                    add(&mut next, *t, *p);
                }
            }
        }
        if !revoke.is_empty() {
            m.assigned = kept;
            m.revoking = revoke;
            m.state = MemberState::UnrevokedPartitions;
            m.revoke_deadline = Some(now + m.rebalance_timeout);
            info!(
                group = group_id,
                member = member_id,
                epoch = m.epoch,
                "member must revoke partitions"
            );
            return;
        }
        m.assigned = next;
        if m.epoch != target_epoch {
            m.previous_epoch = m.epoch;
            m.epoch = target_epoch;
        }
        m.state = if unreleased {
            MemberState::UnreleasedPartitions
        } else {
            MemberState::Stable
        };
    }

    /// Members whose session lapsed and members that did not give partitions up within
    /// their rebalance timeout, with the reason: to be removed with [`Self::remove_members`].
    pub(super) fn expiring(
        &self,
        config: &ConsumerGroupConfig,
        now: Instant,
    ) -> Vec<(String, &'static str)> {
        self.members
            .iter()
            .filter_map(|(id, m)| {
                let session = m.classic.as_ref().map_or(config.session_timeout, |c| {
                    Duration::from_millis(c.session_timeout_ms)
                });
                if now.duration_since(m.last_heartbeat) > session {
                    Some((id.clone(), "session expired"))
                } else if m.revoke_deadline.is_some_and(|d| now > d) {
                    Some((id.clone(), "did not revoke within the rebalance timeout"))
                } else {
                    None
                }
            })
            .collect()
    }

    pub(super) fn remove_members(&mut self, group_id: &str, gone: &[(String, &'static str)]) {
        for (id, why) in gone {
            self.remove_member(group_id, id, why);
        }
    }

    pub(super) fn view(&self) -> ConsumerGroupView {
        ConsumerGroupView {
            state: self.state(),
            epoch: self.epoch,
            assignment_epoch: self.assignment_epoch,
            assignor: if self.assignor.is_empty() {
                ASSIGNORS[0].to_string()
            } else {
                self.assignor.clone()
            },
            topic_names: self.topic_names(),
            members: self
                .members
                .iter()
                .map(|(id, m)| MemberView {
                    member_id: id.clone(),
                    instance_id: m.instance_id.clone(),
                    rack_id: m.rack_id.clone(),
                    member_epoch: m.epoch,
                    client_id: m.client_id.clone(),
                    host: m.host.clone(),
                    topics: m.topics.clone(),
                    regex: m.regex.as_ref().map(|(s, _)| s.clone()),
                    assigned: m.assigned.clone(),
                    target: self.target.get(id).cloned().unwrap_or_default(),
                    member_type: if m.classic.is_some() { 0 } else { 1 },
                    classic_metadata: m
                        .classic
                        .as_ref()
                        .and_then(|c| c.protocols.first())
                        .map(|(_, meta)| Bytes::from(meta.clone())),
                })
                .collect(),
        }
    }

    /// A classic group converted at its first consumer-protocol member (an online upgrade):
    /// every member keeps its generation as its member epoch and its assignment, which is
    /// also the target until the next epoch. None if a member's metadata is not the consumer
    /// protocol's.
    pub(super) fn from_classic(
        group_id: &str,
        generation: i32,
        seeds: Vec<ClassicSeed>,
        topics: &dyn TopicSource,
        now: Instant,
    ) -> Option<Self> {
        let mut g = ConsumerGroup {
            epoch: generation,
            assignment_epoch: generation,
            assignor: ASSIGNORS[0].to_string(),
            ..Default::default()
        };
        for seed in seeds {
            let (mut subscribed, _) = decode_subscription(&seed.subscription)?;
            subscribed.sort();
            subscribed.dedup();
            let assigned = decode_assignment(&seed.assignment, topics);
            g.target.insert(seed.member_id.clone(), assigned.clone());
            g.members.insert(
                seed.member_id,
                Member {
                    classic: Some(ClassicMember {
                        session_timeout_ms: seed.session_timeout.as_millis() as u64,
                        protocols: seed
                            .protocols
                            .into_iter()
                            .map(|(n, m)| (n, m.to_vec()))
                            .collect(),
                    }),
                    topics: subscribed,
                    epoch: generation,
                    previous_epoch: generation,
                    assigned,
                    ..Member::new(
                        seed.instance_id,
                        &seed.client_id,
                        &seed.host,
                        seed.rebalance_timeout,
                        now,
                    )
                },
            );
        }
        g.refresh_topics(topics, None);
        g.dirty = true;
        info!(
            group = group_id,
            generation,
            members = g.members.len(),
            "classic group converted to a consumer group"
        );
        Some(g)
    }

    /// The group's members but `leaving` as a classic group would hold them, when every one
    /// of them speaks the classic protocol (the last consumer-protocol members are the ones
    /// leaving): the group epoch before they leave, which the classic members hold and
    /// becomes the classic generation, and each member with its protocols and current
    /// assignment in the classic encoding. None if no member would be left, or a
    /// consumer-protocol member would (a static one away for now included).
    pub(super) fn to_classic_without(&self, leaving: &[String]) -> Option<(i32, Vec<ClassicSeed>)> {
        let staying = || self.members.iter().filter(|(id, _)| !leaving.contains(id));
        if staying().next().is_none() || staying().any(|(_, m)| m.classic.is_none()) {
            return None;
        }
        let names = self.topic_names();
        let seeds = staying()
            .filter_map(|(id, m)| {
                let classic = m.classic.as_ref()?;
                let protocols: Vec<(String, Bytes)> = classic
                    .protocols
                    .iter()
                    .map(|(n, meta)| (n.clone(), Bytes::from(meta.clone())))
                    .collect();
                Some(ClassicSeed {
                    member_id: id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    host: m.host.clone(),
                    session_timeout: Duration::from_millis(classic.session_timeout_ms),
                    rebalance_timeout: m.rebalance_timeout,
                    subscription: Bytes::new(),
                    protocols,
                    assignment: encode_assignment(&m.assigned, &names),
                })
            })
            .collect();
        Some((self.epoch, seeds))
    }

    /// A static member (`instance`) back under a new member id takes over its old
    /// incarnation's place: epoch, assignment and target; nothing changes for the others.
    fn replace_static(
        &mut self,
        group_id: &str,
        instance: &str,
        old: &str,
        new: &str,
        now: Instant,
    ) {
        if let Some(mut m) = self.members.remove(old) {
            if m.epoch == STATIC_LEAVE_EPOCH {
                m.epoch = m.previous_epoch.max(0);
            }
            m.last_heartbeat = now;
            self.members.insert(new.to_string(), m);
            if let Some(t) = self.target.remove(old) {
                self.target.insert(new.to_string(), t);
            }
            self.dirty = true;
            info!(group = group_id, %instance, member = %new, replaced = %old, "static member rejoined");
        }
    }

    /// A JoinGroup from a classic member: its subscription and the partitions it still owns
    /// (what it does not list it has given up), then one reconciliation step. The answer
    /// names no leader: the coordinator assigns, and SyncGroup hands the member its part.
    pub(super) fn classic_join(
        &mut self,
        group_id: &str,
        req: super::JoinRequest,
        topics: &dyn TopicSource,
        now: Instant,
    ) -> super::JoinOutcome {
        let fail = |error: i16, member_id: String| super::JoinOutcome {
            error,
            member_id,
            generation: -1,
            ..Default::default()
        };
        let Some((mut subscribed, owned)) = req
            .protocols
            .first()
            .and_then(|(_, meta)| decode_subscription(meta))
        else {
            return fail(INCONSISTENT_GROUP_PROTOCOL, req.member_id);
        };
        subscribed.sort();
        subscribed.dedup();
        // The member holding the request's group.instance.id, if any.
        let holder = req
            .instance_id
            .as_deref()
            .and_then(|instance| self.instance_holder(instance).cloned());
        if holder
            .as_ref()
            .is_some_and(|old| !req.member_id.is_empty() && *old != req.member_id)
        {
            // An older incarnation of a static member that was replaced.
            return fail(FENCED_INSTANCE_ID, req.member_id);
        }
        // Every other classic member must support one of its protocols, or the group could
        // not pick one if it became a classic group again (Kafka refuses such a join too).
        let shared = req.protocols.iter().any(|(p, _)| {
            self.members
                .iter()
                .filter(|(id, _)| **id != req.member_id && Some(*id) != holder.as_ref())
                .filter_map(|(_, m)| m.classic.as_ref())
                .all(|c| c.protocols.iter().any(|(q, _)| q == p))
        });
        if !shared {
            return fail(INCONSISTENT_GROUP_PROTOCOL, req.member_id);
        }
        let mut member_id = req.member_id.clone();
        match (&req.instance_id, holder) {
            (Some(instance), Some(old)) if member_id.is_empty() => {
                // A restarted static member takes its place back under a new member id.
                member_id = format!("{}-{}", req.client_id, Uuid::new_v4());
                self.replace_static(group_id, instance, &old, &member_id, now);
            }
            // Static members join without first obtaining a member id, as in Kafka.
            (Some(_), None) if member_id.is_empty() => {
                member_id = format!("{}-{}", req.client_id, Uuid::new_v4());
            }
            // A member id for an instance nobody holds: Kafka's "instance id is unknown".
            (Some(_), None) => return fail(UNKNOWN_MEMBER_ID, req.member_id),
            (None, _) if member_id.is_empty() => {
                member_id = format!("{}-{}", req.client_id, Uuid::new_v4());
                if req.require_known_member_id {
                    return fail(MEMBER_ID_REQUIRED, member_id);
                }
            }
            _ => {}
        }
        let owned = by_id(owned.into_iter(), topics);
        let mut changed = false;
        let m = self.members.entry(member_id.clone()).or_insert_with(|| {
            changed = true;
            info!(group = group_id, member = %member_id, client = %req.client_id, "classic member joined");
            Member::new(
                req.instance_id.clone(),
                &req.client_id,
                &req.host,
                req.rebalance_timeout,
                now,
            )
        });
        m.classic = Some(ClassicMember {
            session_timeout_ms: req.session_timeout.as_millis() as u64,
            protocols: req
                .protocols
                .iter()
                .map(|(n, meta)| (n.clone(), meta.to_vec()))
                .collect(),
        });
        m.rebalance_timeout = req.rebalance_timeout;
        m.last_heartbeat = now;
        if subscribed != m.topics {
            m.topics = subscribed;
            changed = true;
        }
        // What it no longer owns it has given up (an eager member gives up everything
        // before it rejoins): those partitions are free for their next owner.
        m.assigned = intersection(&m.assigned, &owned);
        if self.refresh_topics(topics, Some(&member_id)) {
            changed = true;
        }
        if changed {
            self.bump(group_id);
        }
        self.reconcile(group_id, &member_id, Some(&owned), now);
        self.dirty = true;
        let Some(m) = self.members.get(&member_id) else {
            return fail(UNKNOWN_MEMBER_ID, member_id);
        };
        super::JoinOutcome {
            error: 0,
            generation: m.epoch,
            protocol_type: Some("consumer".into()),
            protocol_name: req.protocols.first().map(|(n, _)| n.clone()),
            leader: String::new(),
            member_id,
            members: vec![],
            skip_assignment: false,
        }
    }

    /// A SyncGroup from a classic member: its assignment, in the classic encoding.
    pub(super) fn classic_sync(
        &self,
        member_id: &str,
        generation: i32,
    ) -> Result<(Bytes, Option<String>), i16> {
        let m = self
            .members
            .get(member_id)
            .filter(|m| m.classic.is_some())
            .ok_or(UNKNOWN_MEMBER_ID)?;
        if generation != m.epoch {
            return Err(ILLEGAL_GENERATION);
        }
        let names = self.topic_names();
        let protocol = m
            .classic
            .as_ref()
            .and_then(|c| c.protocols.first())
            .map(|(n, _)| n.clone());
        Ok((encode_assignment(&m.assigned, &names), protocol))
    }

    /// A Heartbeat from a classic member: REBALANCE_IN_PROGRESS when it should rejoin to
    /// give partitions up, to move to the new epoch, or to take partitions now released.
    pub(super) fn classic_heartbeat(
        &mut self,
        member_id: &str,
        generation: i32,
        now: Instant,
    ) -> i16 {
        let held = self.held_by_others(member_id);
        let target = self.target.get(member_id).cloned().unwrap_or_default();
        let target_epoch = self.assignment_epoch;
        let Some(m) = self
            .members
            .get_mut(member_id)
            .filter(|m| m.classic.is_some())
        else {
            return UNKNOWN_MEMBER_ID;
        };
        if generation != m.epoch {
            return ILLEGAL_GENERATION;
        }
        m.last_heartbeat = now;
        let released = target.iter().any(|(t, ps)| {
            ps.iter()
                .any(|p| !contains(&m.assigned, t, *p) && !held.contains(&(*t, *p)))
        });
        let behind = m.epoch != target_epoch
            || m.state == MemberState::UnrevokedPartitions
            || (m.state == MemberState::UnreleasedPartitions && released);
        if behind {
            REBALANCE_IN_PROGRESS
        } else {
            0
        }
    }

    /// The classic member a LeaveGroup entry names (Kafka's classicGroupLeaveToConsumerGroup):
    /// by instance id alone the static member holding it, by instance and member id that
    /// member unless another incarnation holds the instance (FENCED_INSTANCE_ID), else the
    /// member id. A consumer-protocol member, or none, is UNKNOWN_MEMBER_ID.
    pub(super) fn classic_leaver(
        &self,
        member_id: &str,
        instance: Option<&str>,
    ) -> Result<String, i16> {
        let id = match instance {
            Some(instance) => match self.instance_holder(instance) {
                None => return Err(UNKNOWN_MEMBER_ID),
                Some(holder) if !member_id.is_empty() && holder != member_id => {
                    return Err(FENCED_INSTANCE_ID)
                }
                Some(holder) => holder.clone(),
            },
            None => member_id.to_string(),
        };
        match self.members.get(&id) {
            Some(m) if m.classic.is_some() => Ok(id),
            _ => Err(UNKNOWN_MEMBER_ID),
        }
    }

    /// Removes a member a LeaveGroup named ([`Self::classic_leaver`]).
    pub(super) fn leave_member(&mut self, group_id: &str, member_id: &str) {
        self.remove_member(group_id, member_id, "left");
    }

    /// The member holding static membership `instance`.
    pub(super) fn instance_holder(&self, instance: &str) -> Option<&String> {
        self.members
            .iter()
            .find(|(_, m)| m.instance_id.as_deref() == Some(instance))
            .map(|(id, _)| id)
    }

    /// Whether a request from `member_id` with `instance_id` comes from an older incarnation
    /// of a static member another member id has replaced (FENCED_INSTANCE_ID).
    pub(super) fn fences(&self, instance_id: Option<&str>, member_id: &str) -> bool {
        instance_id
            .and_then(|i| self.instance_holder(i))
            .is_some_and(|holder| holder != member_id)
    }

    /// The names of the topic ids the group's assignments use.
    fn topic_names(&self) -> BTreeMap<Uuid, String> {
        self.topics
            .iter()
            .map(|(n, (id, _))| (*id, n.clone()))
            .collect()
    }

    pub(super) fn has_member(&self, member_id: &str) -> bool {
        self.members.contains_key(member_id)
    }
}

/// `assigned` in the classic consumer protocol's assignment encoding (version 0).
fn encode_assignment(assigned: &Assignment, names: &BTreeMap<Uuid, String>) -> Bytes {
    use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition;
    use kafka_protocol::messages::{ConsumerProtocolAssignment, TopicName};
    use kafka_protocol::protocol::{Encodable, StrBytes};
    let a = ConsumerProtocolAssignment::default().with_assigned_partitions(
        assigned
            .iter()
            .filter_map(|(id, ps)| {
                Some(
                    TopicPartition::default()
                        .with_topic(TopicName(StrBytes::from_string(names.get(id)?.clone())))
                        .with_partitions(ps.iter().copied().collect()),
                )
            })
            .collect(),
    );
    let mut buf = bytes::BytesMut::new();
    buf.extend_from_slice(&0i16.to_be_bytes());
    let _ = a.encode(&mut buf, 0);
    buf.freeze()
}

impl ConsumerGroupView {
    /// The group as DescribeGroups (and the HTTP API, the console) show a classic group:
    /// subscriptions and assignments in the classic consumer protocol's encoding.
    pub fn classic(&self, group_id: &str) -> super::GroupDescription {
        use kafka_protocol::messages::ConsumerProtocolSubscription;
        use kafka_protocol::protocol::{Encodable, StrBytes};
        super::GroupDescription {
            group_id: group_id.to_string(),
            state: self.state,
            protocol_type: "consumer".into(),
            protocol: self.assignor.clone(),
            generation: self.epoch,
            members: self
                .members
                .iter()
                .map(|m| {
                    let subscription = m.classic_metadata.clone().unwrap_or_else(|| {
                        let s = ConsumerProtocolSubscription::default().with_topics(
                            m.topics
                                .iter()
                                .map(|t| StrBytes::from_string(t.clone()))
                                .collect(),
                        );
                        let mut buf = bytes::BytesMut::new();
                        buf.extend_from_slice(&0i16.to_be_bytes());
                        let _ = s.encode(&mut buf, 0);
                        buf.freeze()
                    });
                    (
                        m.member_id.clone(),
                        m.instance_id.clone(),
                        m.client_id.clone(),
                        m.host.clone(),
                        subscription,
                        encode_assignment(&m.assigned, &self.topic_names),
                    )
                })
                .collect(),
        }
    }
}

/// A member's epoch and reconciliation state, to tell whether a heartbeat changed them.
fn m_epoch_state(g: &ConsumerGroup, id: &str) -> Option<(i32, MemberState, usize)> {
    g.members
        .get(id)
        .map(|m| (m.epoch, m.state, m.revoking.len()))
}

/// Partitions of the subscribed topics, sorted by topic name then partition.
fn partitions_of(topics: &BTreeMap<String, (Uuid, i32)>) -> Vec<(String, Uuid, i32)> {
    topics
        .iter()
        .flat_map(|(name, (id, n))| (0..*n).map(move |p| (name.clone(), *id, p)))
        .collect()
}

/// The uniform assignor: as even as the subscriptions allow, and sticky: a member keeps
/// what it had up to its share, so only the partitions that must move do.
pub fn uniform(
    subscriptions: &BTreeMap<String, BTreeSet<String>>,
    topics: &BTreeMap<String, (Uuid, i32)>,
    previous: &BTreeMap<String, Assignment>,
) -> BTreeMap<String, Assignment> {
    let partitions = partitions_of(topics);
    let eligible = |topic: &str| -> Vec<&String> {
        subscriptions
            .iter()
            .filter(|(_, s)| s.contains(topic))
            .map(|(id, _)| id)
            .collect()
    };
    let previous_count = |id: &str| {
        previous
            .get(id)
            .map_or(0, |a| a.values().map(BTreeSet::len).sum())
    };
    // Each member's share: what a least-loaded greedy pass gives it, the partitions with the
    // fewest candidates first; ties go to the members that had more (less to move).
    let mut order: Vec<&(String, Uuid, i32)> = partitions.iter().collect();
    order.sort_by_key(|(t, _, p)| (eligible(t).len(), t.clone(), *p));
    let mut quota: BTreeMap<&String, usize> = subscriptions.keys().map(|id| (id, 0)).collect();
    for (t, _, _) in &order {
        if let Some(id) = eligible(t).into_iter().min_by_key(|id| {
            (
                quota[*id],
                std::cmp::Reverse(previous_count(id)),
                (*id).clone(),
            )
        }) {
            *quota.get_mut(id).expect("member") += 1;
        }
    }
    let mut out: BTreeMap<String, Assignment> = subscriptions
        .keys()
        .map(|id| (id.clone(), Assignment::new()))
        .collect();
    let mut count: BTreeMap<&String, usize> = subscriptions.keys().map(|id| (id, 0)).collect();
    let mut taken: HashSet<(Uuid, i32)> = HashSet::new();
    // Keep what each member had, up to its share.
    for (id, had) in previous {
        let Some((key, subscribed)) = subscriptions.get_key_value(id) else {
            continue;
        };
        for (t, ps) in had {
            let Some((name, (_, n))) = topics.iter().find(|(_, (tid, _))| tid == t) else {
                continue;
            };
            if !subscribed.contains(name) {
                continue;
            }
            for p in ps.iter().filter(|p| **p < *n) {
                if count[key] < quota[key] && taken.insert((*t, *p)) {
                    *count.get_mut(key).expect("member") += 1;
                    add(out.get_mut(id).expect("member"), *t, *p);
                }
            }
        }
    }
    // The rest to the members furthest below their share.
    for (t, tid, p) in order {
        if taken.contains(&(*tid, *p)) {
            continue;
        }
        let Some(id) = eligible(t).into_iter().min_by_key(|id| {
            let below = quota[*id] as i64 - count[*id] as i64;
            (std::cmp::Reverse(below), count[*id], (*id).clone())
        }) else {
            continue;
        };
        taken.insert((*tid, *p));
        *count.get_mut(id).expect("member") += 1;
        add(out.get_mut(id).expect("member"), *tid, *p);
    }
    out
}

/// The range assignor: per topic, its members (by member id) get consecutive ranges of
/// partitions, the first ones one more when they do not divide evenly.
pub fn range(
    subscriptions: &BTreeMap<String, BTreeSet<String>>,
    topics: &BTreeMap<String, (Uuid, i32)>,
) -> BTreeMap<String, Assignment> {
    let mut out: BTreeMap<String, Assignment> = subscriptions
        .keys()
        .map(|id| (id.clone(), Assignment::new()))
        .collect();
    for (name, (tid, n)) in topics {
        let members: Vec<&String> = subscriptions
            .iter()
            .filter(|(_, s)| s.contains(name))
            .map(|(id, _)| id)
            .collect();
        if members.is_empty() {
            continue;
        }
        let (each, extra) = (*n as usize / members.len(), *n as usize % members.len());
        let mut next = 0i32;
        for (i, id) in members.into_iter().enumerate() {
            let take = each + usize::from(i < extra);
            for _ in 0..take {
                add(out.get_mut(id).expect("member"), *tid, next);
                next += 1;
            }
        }
    }
    out
}

/// The error a heartbeat gets when its group id names a classic group with members.
pub(super) fn classic_group_error(group_id: &str) -> (i16, String) {
    (
        GROUP_ID_NOT_FOUND,
        format!("Group {group_id} is not a consumer group (it is a classic group with members)."),
    )
}

pub(super) fn unknown_member(req: &Heartbeat) -> HeartbeatOutcome {
    HeartbeatOutcome::error(
        UNKNOWN_MEMBER_ID,
        format!(
            "Member {} is not a member of group {}.",
            req.member_id, req.group_id
        ),
        req,
    )
}

#[cfg(test)]
#[path = "consumer_tests.rs"]
mod tests;
