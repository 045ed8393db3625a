//! Share-group membership (ShareGroupHeartbeat, at the group's coordinator): members and
//! which partitions each one fetches from. Records go to one member at a time whatever the
//! assignment (the share-partition hands them out), so partitions are simply spread over
//! the members, and shared when there are more members than partitions. There is no
//! revocation: a member's assignment changes in one step.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use parking_lot::Mutex;
use tracing::info;
use uuid::Uuid;

use super::partition::ShareConfig;
use crate::group::consumer::Assignment;
use crate::group::TopicSource;

const INVALID_REQUEST: i16 = 42;
const UNKNOWN_MEMBER_ID: i16 = 25;
const FENCED_MEMBER_EPOCH: i16 = 110;

/// What a ShareGroupHeartbeat gets back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShareHeartbeatOutcome {
    pub error: i16,
    pub message: Option<String>,
    pub member_id: String,
    pub member_epoch: i32,
    pub heartbeat_interval_ms: i32,
    pub assignment: Option<Assignment>,
}

#[derive(Debug, Clone)]
struct Member {
    epoch: i32,
    topics: Vec<String>,
    rack_id: Option<String>,
    client_id: String,
    host: String,
    last_heartbeat: Instant,
    /// The assignment this member was last sent.
    sent: Option<Assignment>,
}

#[derive(Debug, Clone, Default)]
struct Group {
    epoch: i32,
    members: BTreeMap<String, Member>,
    topics: BTreeMap<String, (Uuid, i32)>,
    assignment: BTreeMap<String, Assignment>,
}

/// A member as ShareGroupDescribe and the HTTP API show it.
#[derive(Debug, Clone)]
pub struct ShareMemberView {
    pub member_id: String,
    pub member_epoch: i32,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub host: String,
    pub topics: Vec<String>,
    pub assignment: Assignment,
}

#[derive(Debug, Clone)]
pub struct ShareGroupView {
    pub state: &'static str,
    pub epoch: i32,
    pub topic_names: BTreeMap<Uuid, String>,
    pub members: Vec<ShareMemberView>,
}

impl ShareGroupView {
    /// A group with no members.
    pub fn empty() -> Self {
        Self {
            state: "Empty",
            epoch: 0,
            topic_names: BTreeMap::new(),
            members: Vec::new(),
        }
    }
}

/// A ShareGroupHeartbeat, decoded (`topics` None: unchanged).
#[derive(Debug, Clone, Default)]
pub struct ShareHeartbeat {
    pub group_id: String,
    pub member_id: String,
    pub member_epoch: i32,
    pub rack_id: Option<String>,
    pub topics: Option<Vec<String>>,
    pub client_id: String,
    pub host: String,
}

#[derive(Default)]
pub struct ShareGroups {
    groups: Mutex<BTreeMap<String, Group>>,
}

impl Group {
    fn refresh(&mut self, source: &dyn TopicSource) -> bool {
        let wanted: BTreeSet<&String> = self.members.values().flat_map(|m| &m.topics).collect();
        let topics: BTreeMap<String, (Uuid, i32)> = wanted
            .into_iter()
            .filter_map(|t| source.lookup(t).map(|x| (t.clone(), x)))
            .collect();
        let changed = topics != self.topics;
        self.topics = topics;
        changed
    }

    /// A new epoch and its assignment: per topic, its partitions dealt over its subscribers
    /// in turn, going round the shorter list again until both are used up.
    fn bump(&mut self, group_id: &str) {
        self.epoch += 1;
        let mut out: BTreeMap<String, Assignment> = self
            .members
            .keys()
            .map(|id| (id.clone(), Assignment::new()))
            .collect();
        for (name, (id, n)) in &self.topics {
            let subscribers: Vec<&String> = self
                .members
                .iter()
                .filter(|(_, m)| m.topics.contains(name))
                .map(|(id, _)| id)
                .collect();
            if subscribers.is_empty() || *n == 0 {
                continue;
            }
            let rounds = (*n as usize).max(subscribers.len());
            for k in 0..rounds {
                let member = subscribers[k % subscribers.len()];
                if let Some(a) = out.get_mut(member) {
                    a.entry(*id).or_default().insert((k % *n as usize) as i32);
                }
            }
        }
        self.assignment = out;
        info!(
            group = group_id,
            epoch = self.epoch,
            members = self.members.len(),
            "share group assignment"
        );
    }
}

impl ShareGroups {
    pub fn heartbeat(
        &self,
        req: ShareHeartbeat,
        topics: &dyn TopicSource,
        config: &ShareConfig,
    ) -> ShareHeartbeatOutcome {
        let fail = |error: i16, message: String| ShareHeartbeatOutcome {
            error,
            message: Some(message),
            member_id: req.member_id.clone(),
            member_epoch: req.member_epoch,
            ..Default::default()
        };
        if req.group_id.is_empty() {
            return fail(INVALID_REQUEST, "GroupId can't be empty.".into());
        }
        if req.member_id.is_empty() {
            return fail(INVALID_REQUEST, "MemberId can't be empty.".into());
        }
        if req.member_epoch < -1 {
            return fail(INVALID_REQUEST, "MemberEpoch is invalid.".into());
        }
        if req.member_epoch == 0 && req.topics.as_ref().is_none_or(|t| t.is_empty()) {
            return fail(
                INVALID_REQUEST,
                "SubscribedTopicNames must be set in first request.".into(),
            );
        }
        let now = Instant::now();
        let mut groups = self.groups.lock();
        // Only a join creates a group: a failed heartbeat leaves nothing behind.
        let g = if req.member_epoch == 0 {
            groups.entry(req.group_id.clone()).or_default()
        } else {
            match groups.get_mut(&req.group_id) {
                Some(g) => g,
                None => {
                    return fail(
                        UNKNOWN_MEMBER_ID,
                        format!("Member {} is not in the group.", req.member_id),
                    )
                }
            }
        };
        let mut changed = false;
        match req.member_epoch {
            -1 => {
                if g.members.remove(&req.member_id).is_none() {
                    return fail(
                        UNKNOWN_MEMBER_ID,
                        format!("Member {} is not in the group.", req.member_id),
                    );
                }
                g.assignment.remove(&req.member_id);
                info!(group = %req.group_id, member = %req.member_id, "share member left");
                g.refresh(topics);
                g.bump(&req.group_id);
                return ShareHeartbeatOutcome {
                    member_id: req.member_id.clone(),
                    member_epoch: -1,
                    ..Default::default()
                };
            }
            0 => {
                if !g.members.contains_key(&req.member_id) {
                    info!(group = %req.group_id, member = %req.member_id, client = %req.client_id, "share member joined");
                    changed = true;
                }
                let m = g.members.entry(req.member_id.clone()).or_insert(Member {
                    epoch: 0,
                    topics: vec![],
                    rack_id: None,
                    client_id: req.client_id.clone(),
                    host: req.host.clone(),
                    last_heartbeat: now,
                    sent: None,
                });
                // A rejoin is sent its assignment again.
                m.sent = None;
            }
            epoch => match g.members.get(&req.member_id) {
                None => {
                    return fail(
                        UNKNOWN_MEMBER_ID,
                        format!("Member {} is not in the group.", req.member_id),
                    )
                }
                Some(m) if m.epoch != epoch => {
                    return fail(
                        FENCED_MEMBER_EPOCH,
                        format!(
                            "The member epoch {epoch} does not match the expected {}.",
                            m.epoch
                        ),
                    )
                }
                Some(_) => {}
            },
        }
        let Some(m) = g.members.get_mut(&req.member_id) else {
            return fail(UNKNOWN_MEMBER_ID, "member vanished".into());
        };
        m.last_heartbeat = now;
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
        if g.refresh(topics) {
            changed = true;
        }
        if changed {
            g.bump(&req.group_id);
        }
        let assignment = g
            .assignment
            .get(&req.member_id)
            .cloned()
            .unwrap_or_default();
        let epoch = g.epoch;
        let Some(m) = g.members.get_mut(&req.member_id) else {
            return fail(UNKNOWN_MEMBER_ID, "member vanished".into());
        };
        // A member moves to the group's epoch in its own heartbeat, with its assignment.
        m.epoch = epoch;
        let send = m.sent.as_ref() != Some(&assignment);
        if send {
            m.sent = Some(assignment.clone());
        }
        ShareHeartbeatOutcome {
            error: 0,
            message: None,
            member_id: req.member_id.clone(),
            member_epoch: epoch,
            heartbeat_interval_ms: config.heartbeat_interval.as_millis().min(i32::MAX as u128)
                as i32,
            assignment: send.then_some(assignment),
        }
    }

    /// Removes members silent for their group's session timeout.
    pub fn expire(&self, now: Instant, config_of: impl Fn(&str) -> ShareConfig) {
        let mut groups = self.groups.lock();
        for (id, g) in groups.iter_mut() {
            let before = g.members.len();
            let session_timeout = config_of(id).session_timeout;
            g.members.retain(|member, m| {
                let alive = now.duration_since(m.last_heartbeat) <= session_timeout;
                if !alive {
                    info!(group = %id, member = %member, "share member session expired");
                }
                alive
            });
            if g.members.len() != before {
                g.assignment.retain(|m, _| g.members.contains_key(m));
                g.bump(id);
            }
        }
    }

    pub fn describe(&self, group_id: &str) -> Option<ShareGroupView> {
        let groups = self.groups.lock();
        let g = groups.get(group_id)?;
        Some(ShareGroupView {
            state: if g.members.is_empty() {
                "Empty"
            } else {
                "Stable"
            },
            epoch: g.epoch,
            topic_names: g
                .topics
                .iter()
                .map(|(n, (id, _))| (*id, n.clone()))
                .collect(),
            members: g
                .members
                .iter()
                .map(|(id, m)| ShareMemberView {
                    member_id: id.clone(),
                    member_epoch: m.epoch,
                    rack_id: m.rack_id.clone(),
                    client_id: m.client_id.clone(),
                    host: m.host.clone(),
                    topics: m.topics.clone(),
                    assignment: g.assignment.get(id).cloned().unwrap_or_default(),
                })
                .collect(),
        })
    }

    pub fn contains(&self, group_id: &str) -> bool {
        self.groups.lock().contains_key(group_id)
    }

    /// (group id, state) of every share group.
    pub fn list(&self) -> Vec<(String, &'static str)> {
        self.groups
            .lock()
            .iter()
            .map(|(id, g)| {
                (
                    id.clone(),
                    if g.members.is_empty() {
                        "Empty"
                    } else {
                        "Stable"
                    },
                )
            })
            .collect()
    }

    /// Forgets share groups `which` names (their coordinator moved).
    pub fn forget(&self, which: impl Fn(&str) -> bool) {
        self.groups.lock().retain(|id, _| !which(id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Topics(BTreeMap<String, (Uuid, i32)>);
    impl TopicSource for Topics {
        fn lookup(&self, name: &str) -> Option<(Uuid, i32)> {
            self.0.get(name).copied()
        }
        fn names(&self) -> Vec<String> {
            self.0.keys().cloned().collect()
        }
    }

    fn join(g: &ShareGroups, t: &Topics, id: &str) -> ShareHeartbeatOutcome {
        g.heartbeat(
            ShareHeartbeat {
                group_id: "g".into(),
                member_id: id.into(),
                member_epoch: 0,
                topics: Some(vec!["t".into()]),
                ..Default::default()
            },
            t,
            &ShareConfig::default(),
        )
    }

    #[test]
    fn more_members_than_partitions_share_them_and_everyone_gets_work() {
        let g = ShareGroups::default();
        let t = Topics(BTreeMap::from([("t".to_string(), (Uuid::new_v4(), 2))]));
        for id in ["a", "b", "c"] {
            assert_eq!(join(&g, &t, id).error, 0);
        }
        let v = g.describe("g").expect("group");
        let counts: Vec<usize> = v
            .members
            .iter()
            .map(|m| m.assignment.values().map(BTreeSet::len).sum())
            .collect();
        assert_eq!(counts, [1, 1, 1]);
        let covered: BTreeSet<i32> = v
            .members
            .iter()
            .flat_map(|m| m.assignment.values().flatten().copied())
            .collect();
        assert_eq!(covered, BTreeSet::from([0, 1]));
        // An epoch the member was never told is fenced.
        let beat = |epoch: i32| {
            g.heartbeat(
                ShareHeartbeat {
                    group_id: "g".into(),
                    member_id: "a".into(),
                    member_epoch: epoch,
                    ..Default::default()
                },
                &t,
                &ShareConfig::default(),
            )
        };
        assert_eq!(beat(v.epoch + 4).error, FENCED_MEMBER_EPOCH);
        // The others joining did not fence a: at the epoch it was told (1) it gets the new
        // epoch and its new assignment, once.
        let moved = beat(1);
        assert_eq!((moved.error, moved.member_epoch), (0, v.epoch));
        assert!(moved.assignment.is_some());
        let ok = g.heartbeat(
            ShareHeartbeat {
                group_id: "g".into(),
                member_id: "a".into(),
                member_epoch: v.epoch,
                ..Default::default()
            },
            &t,
            &ShareConfig::default(),
        );
        assert_eq!((ok.error, ok.assignment), (0, None));
        // Silent members go; the rest take over their partitions.
        g.expire(
            Instant::now() + ShareConfig::default().session_timeout * 2,
            |_| ShareConfig::default(),
        );
        assert!(g.describe("g").expect("group").members.is_empty());
    }

    #[test]
    fn fewer_members_than_partitions_split_them() {
        let g = ShareGroups::default();
        let t = Topics(BTreeMap::from([("t".to_string(), (Uuid::new_v4(), 5))]));
        join(&g, &t, "a");
        let out = join(&g, &t, "b");
        assert_eq!(
            out.assignment
                .expect("assignment")
                .values()
                .map(BTreeSet::len)
                .sum::<usize>(),
            2
        );
        let bad = g.heartbeat(
            ShareHeartbeat {
                group_id: "g".into(),
                member_id: "x".into(),
                member_epoch: 0,
                topics: None,
                ..Default::default()
            },
            &t,
            &ShareConfig::default(),
        );
        assert_eq!(bad.error, INVALID_REQUEST);
    }
}
