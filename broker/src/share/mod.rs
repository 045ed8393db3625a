//! Share groups (KIP-932, "queues for Kafka"): members of a share group consume a topic
//! together, each record going to one member at a time, acknowledged one by one, with no
//! limit on members per partition.
//!
//! - [`group`]: membership and assignment, at the group's coordinator (ShareGroupHeartbeat).
//! - [`partition`]: each share-partition's in-flight records, at the partition's leader
//!   (ShareFetch, ShareAcknowledge).
//! - Share sessions: per (group, member), the partitions a member fetches from this broker
//!   and the epoch its next request must carry.
//!
//! The in-flight window is held in the leader's memory; its snapshot (start, end and the
//! state and delivery count of each record in it) is committed at the group's coordinator,
//! and a new leader resumes from it (docs/decisions/0022-share-groups.md).

pub mod group;
pub mod partition;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use uuid::Uuid;

pub use group::{ShareGroups, ShareHeartbeat, ShareHeartbeatOutcome};
pub use partition::{Acquired, ShareConfig, SharePartition, Snapshot};

pub const SHARE_SESSION_NOT_FOUND: i16 = 122;
pub const INVALID_SHARE_SESSION_EPOCH: i16 = 123;
pub const SHARE_SESSION_LIMIT_REACHED: i16 = 133;
const INVALID_REQUEST: i16 = 42;
/// Share sessions kept at once (Kafka's `group.share.max.share.sessions`).
pub const MAX_SESSIONS: usize = 10_000;
/// Partitions in one share session.
const MAX_SESSION_PARTITIONS: usize = 10_000;

/// (group, topic id, partition).
pub type ShareKey = (String, Uuid, i32);

#[derive(Debug)]
struct Session {
    next_epoch: i32,
    partitions: BTreeSet<(Uuid, i32)>,
    last_used: Instant,
}

/// What this broker holds for share groups.
pub struct ShareState {
    /// The broker's settings; a group's own configs override them ([`Self::config_of`]).
    pub config: ShareConfig,
    group_configs: crate::group::GroupConfigs,
    pub groups: ShareGroups,
    partitions: Mutex<HashMap<ShareKey, SharePartition>>,
    /// One per share group: held while its snapshots are written ([`Self::persist_lock`]).
    persist_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// One per share group: held while its snapshots are committed ([`Self::commit_lock`]).
    commit_locks: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    sessions: Mutex<HashMap<(String, String), Session>>,
    /// Per share group, bumped (under its persist lock) each time its state is reset or
    /// deleted here: a share-partition set up from durable state read before a bump is
    /// stale ([`Self::generation`]).
    generations: Mutex<HashMap<String, u64>>,
}

/// How a request's share session epoch was taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionStep {
    /// The partitions to fetch from.
    Fetch(BTreeSet<(Uuid, i32)>),
    /// Epoch -1: the session is closed after this request's acknowledgements.
    Close(BTreeSet<(Uuid, i32)>),
}

impl ShareState {
    pub fn new(config: ShareConfig) -> Self {
        Self {
            config,
            group_configs: crate::group::GroupConfigs::default(),
            groups: ShareGroups::default(),
            partitions: Mutex::new(HashMap::new()),
            persist_locks: Mutex::new(HashMap::new()),
            commit_locks: Mutex::new(HashMap::new()),
            sessions: Mutex::new(HashMap::new()),
            generations: Mutex::new(HashMap::new()),
        }
    }

    /// How many times the state of `group` was reset or deleted at this broker.
    pub fn generation(&self, group: &str) -> u64 {
        self.generations.lock().get(group).copied().unwrap_or(0)
    }

    /// Another reset or delete of `group`'s state (under its persist lock).
    pub fn bump_generation(&self, group: &str) {
        *self
            .generations
            .lock()
            .entry(group.to_string())
            .or_default() += 1;
    }

    /// Where groups' own configs (`share.record.lock.duration.ms`, ...) are read from.
    pub fn with_group_configs(mut self, configs: crate::group::GroupConfigs) -> Self {
        self.group_configs = configs;
        self
    }

    /// The settings of one share group: its own configs, else the broker's.
    pub fn config_of(&self, group: &str) -> ShareConfig {
        use metadata_quorum::configs as c;
        let g = self.group_configs.of(group);
        let mut config = self.config;
        if let Some(d) = g.ms(c::SHARE_RECORD_LOCK_DURATION_MS) {
            config.lock_duration = d;
        }
        if let Some(n) = g.get(c::SHARE_DELIVERY_COUNT_LIMIT) {
            config.delivery_count_limit = n;
        }
        if let Some(n) = g.get(c::SHARE_PARTITION_MAX_RECORD_LOCKS) {
            config.max_in_flight = n;
        }
        if let Some(d) = g.ms(c::SHARE_SESSION_TIMEOUT_MS) {
            config.session_timeout = d;
        }
        if let Some(d) = g.ms(c::SHARE_HEARTBEAT_INTERVAL_MS) {
            config.heartbeat_interval = d;
        }
        if let Some(r) = g
            .get::<String>(c::SHARE_AUTO_OFFSET_RESET)
            .and_then(|v| c::share_auto_offset_reset(&v).ok())
        {
            config.auto_offset_reset = r;
        }
        if let Some(rc) = g
            .get::<String>(c::SHARE_ISOLATION_LEVEL)
            .and_then(|v| c::share_read_committed(&v).ok())
        {
            config.read_committed = rc;
        }
        config
    }

    /// Takes a request's share session epoch (0 opens a session, -1 closes it, otherwise
    /// the next epoch in turn) with the partitions it adds and forgets.
    pub fn session(
        &self,
        group: &str,
        member: &str,
        epoch: i32,
        add: impl IntoIterator<Item = (Uuid, i32)>,
        forget: impl IntoIterator<Item = (Uuid, i32)>,
    ) -> Result<SessionStep, i16> {
        let mut sessions = self.sessions.lock();
        let key = (group.to_string(), member.to_string());
        match epoch {
            0 => {
                sessions.remove(&key);
                if sessions.len() >= MAX_SESSIONS {
                    // Sessions of members gone without closing them make room first.
                    let now = Instant::now();
                    let idle = self.config.session_timeout;
                    sessions.retain(|_, s| now.duration_since(s.last_used) < idle);
                }
                if sessions.len() >= MAX_SESSIONS {
                    return Err(SHARE_SESSION_LIMIT_REACHED);
                }
                let s = Session {
                    next_epoch: 1,
                    partitions: add.into_iter().take(MAX_SESSION_PARTITIONS + 1).collect(),
                    last_used: Instant::now(),
                };
                if s.partitions.len() > MAX_SESSION_PARTITIONS {
                    return Err(INVALID_REQUEST);
                }
                let parts = s.partitions.clone();
                sessions.insert(key, s);
                Ok(SessionStep::Fetch(parts))
            }
            -1 => {
                let s = sessions.remove(&key).ok_or(SHARE_SESSION_NOT_FOUND)?;
                Ok(SessionStep::Close(s.partitions))
            }
            e if e < -1 => Err(INVALID_SHARE_SESSION_EPOCH),
            e => {
                let s = sessions.get_mut(&key).ok_or(SHARE_SESSION_NOT_FOUND)?;
                if s.next_epoch != e {
                    // The client starts a new session (epoch 0) after this error.
                    sessions.remove(&key);
                    return Err(INVALID_SHARE_SESSION_EPOCH);
                }
                // Checked before anything changes.
                let forget: BTreeSet<(Uuid, i32)> = forget.into_iter().collect();
                let mut next = s.partitions.clone();
                next.retain(|p| !forget.contains(p));
                for p in add {
                    next.insert(p);
                    if next.len() > MAX_SESSION_PARTITIONS {
                        return Err(INVALID_REQUEST);
                    }
                }
                s.partitions = next;
                s.next_epoch = if e == i32::MAX { 1 } else { e + 1 };
                s.last_used = Instant::now();
                Ok(SessionStep::Fetch(s.partitions.clone()))
            }
        }
    }

    /// Runs `f` on the share-partition of `key`; None if this broker has none (it is only
    /// ever set up from its durable state, never made up here: a made-up window would start
    /// at the log end, skip what the group has not had, and then be written over its state).
    pub fn with_partition<T>(
        &self,
        key: &ShareKey,
        f: impl FnOnce(&mut SharePartition) -> T,
    ) -> Option<T> {
        self.partitions.lock().get_mut(key).map(f)
    }

    /// Whether this broker has the share-partition of `key` (None if not): whether a
    /// snapshot of it was made durable since it was set up here, and the leader epoch it was
    /// set up at.
    pub fn setup_of(&self, key: &ShareKey) -> Option<(bool, i32)> {
        self.partitions
            .lock()
            .get(key)
            .map(|sp| (sp.is_durable(), sp.leader_epoch()))
    }

    /// Forgets the share-partition of `key` (set up at another leader epoch: leadership
    /// went away and came back, and another leader may have moved it meanwhile; or its
    /// group's state was deleted). Whether there was one.
    pub fn remove_partition(&self, key: &ShareKey) -> bool {
        self.partitions.lock().remove(key).is_some()
    }

    /// Replaces the share-partition of `key` by an empty window at `start` (clamped to the
    /// log's [`log.0`, `log.1`]) set up at `leader_epoch` (AlterShareGroupOffsets): what it
    /// held, acquired records too, is forgotten. Not durable until it is written.
    pub fn reset_partition(&self, key: ShareKey, start: i64, log: (i64, i64), leader_epoch: i32) {
        let config = self.config_of(&key.0);
        self.partitions.lock().insert(
            key,
            SharePartition::restore(&Snapshot::at(start), log, leader_epoch, &config),
        );
    }

    /// The lock a share group's snapshots are written under at its partitions' leaders:
    /// two writes of one share-partition never land out of order at its coordinator, and a
    /// slow coordinator holds up only its own groups.
    pub fn persist_lock(&self, group: &str) -> Arc<tokio::sync::Mutex<()>> {
        lock_of(&self.persist_locks, group)
    }

    /// The lock a share group's snapshots are committed under at its coordinator: the
    /// leader-epoch check and the append happen as one.
    pub fn commit_lock(&self, group: &str) -> Arc<Mutex<()>> {
        lock_of(&self.commit_locks, group)
    }

    /// The share-partitions (all, or those in `only`) this broker has, by group.
    pub fn keys_by_group(
        &self,
        only: Option<&BTreeSet<ShareKey>>,
    ) -> BTreeMap<String, BTreeSet<ShareKey>> {
        let parts = self.partitions.lock();
        let mut out: BTreeMap<String, BTreeSet<ShareKey>> = BTreeMap::new();
        for key in parts.keys().filter(|k| only.is_none_or(|o| o.contains(*k))) {
            out.entry(key.0.clone()).or_default().insert(key.clone());
        }
        out
    }

    /// Creates the share-partition of `key` from its durable `snapshot` (on a log holding
    /// [`log.0`, `log.1`)) at `leader_epoch`, unless another request did first.
    pub fn create_partition(
        &self,
        key: ShareKey,
        snapshot: &Snapshot,
        log: (i64, i64),
        leader_epoch: i32,
    ) {
        let config = self.config_of(&key.0);
        self.partitions
            .lock()
            .entry(key)
            .or_insert_with(|| SharePartition::restore(snapshot, log, leader_epoch, &config));
    }

    /// The share-partitions (all, or those in `only`) whose state changed since it was last
    /// made durable, with their snapshots.
    pub fn states_to_persist(
        &self,
        only: Option<&BTreeSet<ShareKey>>,
    ) -> Vec<(ShareKey, Snapshot, i32)> {
        let parts = self.partitions.lock();
        let of = |k: &ShareKey, sp: &SharePartition| {
            Some((k.clone(), sp.to_persist()?, sp.leader_epoch()))
        };
        match only {
            Some(keys) => keys.iter().filter_map(|k| of(k, parts.get(k)?)).collect(),
            None => parts.iter().filter_map(|(k, sp)| of(k, sp)).collect(),
        }
    }

    /// `snapshot` of `key` is durable.
    pub fn persisted(&self, key: &ShareKey, snapshot: Snapshot) {
        if let Some(sp) = self.partitions.lock().get_mut(key) {
            sp.set_persisted(snapshot);
        }
    }

    /// Releases what `member` holds in `partitions` (its session closed).
    pub fn release_member(&self, group: &str, member: &str, partitions: &BTreeSet<(Uuid, i32)>) {
        let config = self.config_of(group);
        let mut parts = self.partitions.lock();
        for (t, p) in partitions {
            if let Some(sp) = parts.get_mut(&(group.to_string(), *t, *p)) {
                sp.release_member(member, &config);
            }
        }
    }

    /// Drops the share-partitions of partitions this broker no longer leads.
    /// `leads(topic, partition, epoch)`: whether this broker leads the partition at the
    /// leader epoch the share-partition was set up at.
    pub fn retain_partitions(&self, leads: impl Fn(&Uuid, i32, i32) -> bool) {
        self.partitions
            .lock()
            .retain(|(_, t, p), sp| leads(t, *p, sp.leader_epoch()));
    }
}

/// The lock of `key` in `locks`, made on first use.
fn lock_of<L: Default>(locks: &Mutex<HashMap<String, Arc<L>>>, key: &str) -> Arc<L> {
    locks.lock().entry(key.to_string()).or_default().clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_epochs_open_step_and_close() {
        let s = ShareState::new(ShareConfig::default());
        let t = Uuid::new_v4();
        assert_eq!(s.session("g", "m", 1, [], []), Err(SHARE_SESSION_NOT_FOUND));
        assert_eq!(
            s.session("g", "m", 0, [(t, 0)], []),
            Ok(SessionStep::Fetch(BTreeSet::from([(t, 0)])))
        );
        assert_eq!(
            s.session("g", "m", 1, [(t, 1)], [(t, 0)]),
            Ok(SessionStep::Fetch(BTreeSet::from([(t, 1)])))
        );
        assert_eq!(
            s.session("g", "m", -1, [], []),
            Ok(SessionStep::Close(BTreeSet::from([(t, 1)])))
        );
        assert_eq!(s.session("g", "m", 2, [], []), Err(SHARE_SESSION_NOT_FOUND));
        // A wrong epoch ends the session: the client opens a new one.
        s.session("g", "m", 0, [(t, 0)], []).expect("open");
        assert_eq!(
            s.session("g", "m", 5, [], []),
            Err(INVALID_SHARE_SESSION_EPOCH)
        );
        assert_eq!(s.session("g", "m", 1, [], []), Err(SHARE_SESSION_NOT_FOUND));
    }
}
