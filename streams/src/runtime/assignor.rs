//! The task assignor: the group leader's part of a rebalance, as a custom consumer
//! assignor (protocol `strom-streams`).
//!
//! Each member (a stream thread) says in its subscription which process it belongs to,
//! which tasks it ran as active and as standby, and which tasks its process has state for
//! (a checkpoint under `state.dir`). The leader then:
//!
//! 1. keeps each task with the member that ran it (sticky), while members stay balanced;
//! 2. gives the rest to a member that kept a standby of it, else to one whose process has
//!    its state, else to the least loaded member;
//! 3. places `num.standby.replicas` standbys of each task on other processes than its
//!    active, preferring those that have its state.
//!
//! A member's assignment carries its partitions (every source partition of its active
//! tasks) and, as user data, its active and standby tasks and which application server
//! (`application.server`) hosts which tasks, for interactive queries.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use strom_client::consumer::{MemberSubscription, PartitionAssignor};
use strom_client::TopicPartition;
use tracing::{info, warn};

use super::Shared;
use crate::task::TaskId;

pub(crate) const PROTOCOL: &str = "strom-streams";

type Tid = (usize, i32);

fn tid(t: TaskId) -> Tid {
    (t.subtopology, t.partition)
}

fn task(t: Tid) -> TaskId {
    TaskId {
        subtopology: t.0,
        partition: t.1,
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct SubscriptionInfo {
    process: String,
    active: Vec<Tid>,
    standby: Vec<Tid>,
    state: Vec<Tid>,
    endpoint: Option<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct AssignmentInfo {
    active: Vec<Tid>,
    standby: Vec<Tid>,
    /// application.server -> the active tasks it hosts.
    hosts: BTreeMap<String, Vec<Tid>>,
}

/// What the last rebalance gave this thread (and where the application's tasks live).
#[derive(Debug, Default, Clone)]
pub(crate) struct ThreadAssignment {
    pub active: BTreeSet<TaskId>,
    pub standby: BTreeSet<TaskId>,
    pub hosts: BTreeMap<String, BTreeSet<TaskId>>,
}

pub(crate) struct StreamsAssignor {
    pub shared: Arc<Shared>,
    pub current: Arc<Mutex<ThreadAssignment>>,
}

impl StreamsAssignor {
    /// Tasks with a checkpoint in this process's state directory.
    fn tasks_with_state(&self) -> Vec<Tid> {
        let dir = self
            .shared
            .config
            .state_dir
            .join(&self.shared.config.application_id);
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter(|e| e.path().join(".checkpoint").exists())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let (s, p) = name.split_once('_')?;
                Some((s.parse().ok()?, p.parse().ok()?))
            })
            .collect()
    }

    /// Source partitions of a task.
    fn partitions_of(&self, t: Tid) -> Vec<TopicPartition> {
        let app = &self.shared.config.application_id;
        self.shared
            .topo
            .subtopologies
            .get(t.0)
            .map(|s| {
                s.sources
                    .iter()
                    .map(|topic| TopicPartition::new(topic.resolve(app), t.1))
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl PartitionAssignor for StreamsAssignor {
    fn name(&self) -> &str {
        PROTOCOL
    }

    fn subscription_user_data(&self) -> Option<Bytes> {
        let cur = self.current.lock().clone();
        let info = SubscriptionInfo {
            process: self.shared.process_id.to_string(),
            active: cur.active.iter().copied().map(tid).collect(),
            standby: cur.standby.iter().copied().map(tid).collect(),
            state: self.tasks_with_state(),
            endpoint: self.shared.config.application_server.clone(),
        };
        serde_json::to_vec(&info).ok().map(Bytes::from)
    }

    fn assign(
        &self,
        members: &[MemberSubscription],
        partitions: &BTreeMap<String, i32>,
    ) -> BTreeMap<String, (Vec<TopicPartition>, Option<Bytes>)> {
        let app = &self.shared.config.application_id;
        // Every task: each subtopology times its source partition count.
        let mut tasks: Vec<Tid> = Vec::new();
        for (i, s) in self.shared.topo.subtopologies.iter().enumerate() {
            let n = s
                .sources
                .iter()
                .filter_map(|t| partitions.get(&t.resolve(app)))
                .max()
                .copied()
                .unwrap_or(0);
            tasks.extend((0..n).map(|p| (i, p)));
        }
        let infos: BTreeMap<&str, SubscriptionInfo> = members
            .iter()
            .map(|m| {
                let info = m
                    .user_data
                    .as_ref()
                    .and_then(|b| serde_json::from_slice(b).ok())
                    .unwrap_or_else(|| {
                        warn!(member = %m.member_id, "a member without streams subscription data");
                        SubscriptionInfo {
                            process: m.member_id.clone(),
                            ..SubscriptionInfo::default()
                        }
                    });
                (m.member_id.as_str(), info)
            })
            .collect();
        let stateful: BTreeSet<usize> = self
            .shared
            .topo
            .subtopologies
            .iter()
            .enumerate()
            .filter(|(_, s)| s.stores.iter().any(|i| self.shared.topo.stores[*i].logged))
            .map(|(i, _)| i)
            .collect();
        let plan = plan(
            &tasks,
            &stateful,
            &infos,
            self.shared.config.num_standby_replicas,
        );
        let mut hosts: BTreeMap<String, Vec<Tid>> = BTreeMap::new();
        for (m, (active, _)) in &plan {
            if let Some(ep) = infos.get(m.as_str()).and_then(|i| i.endpoint.clone()) {
                hosts.entry(ep).or_default().extend(active.iter().copied());
            }
        }
        info!(
            tasks = tasks.len(),
            members = members.len(),
            standbys = self.shared.config.num_standby_replicas,
            "assigned tasks"
        );
        plan.into_iter()
            .map(|(member, (active, standby))| {
                let tps = active.iter().flat_map(|t| self.partitions_of(*t)).collect();
                let data = AssignmentInfo {
                    active,
                    standby,
                    hosts: hosts.clone(),
                };
                (
                    member,
                    (tps, serde_json::to_vec(&data).ok().map(Bytes::from)),
                )
            })
            .collect()
    }

    fn on_assignment(&self, _: &[TopicPartition], user_data: Option<&Bytes>) {
        let info: AssignmentInfo = user_data
            .and_then(|b| serde_json::from_slice(b).ok())
            .unwrap_or_default();
        let mut cur = self.current.lock();
        cur.active = info.active.into_iter().map(task).collect();
        cur.standby = info.standby.into_iter().map(task).collect();
        cur.hosts = info
            .hosts
            .into_iter()
            .map(|(h, ts)| (h, ts.into_iter().map(task).collect()))
            .collect();
    }
}

/// The assignment: member -> (active tasks, standby tasks). Stateful tasks (of
/// `stateful` subtopologies) and stateless ones are balanced separately, and only
/// stateful tasks get standbys. Pure, for tests.
fn plan(
    tasks: &[Tid],
    stateful: &BTreeSet<usize>,
    infos: &BTreeMap<&str, SubscriptionInfo>,
    standbys: usize,
) -> BTreeMap<String, (Vec<Tid>, Vec<Tid>)> {
    let members: Vec<&str> = infos.keys().copied().collect();
    let mut out: BTreeMap<String, (Vec<Tid>, Vec<Tid>)> = members
        .iter()
        .map(|m| (m.to_string(), (Vec::new(), Vec::new())))
        .collect();
    if members.is_empty() {
        return out;
    }
    let (with_state, without): (Vec<Tid>, Vec<Tid>) =
        tasks.iter().partition(|t| stateful.contains(&t.0));
    let mut owner: BTreeMap<Tid, &str> = BTreeMap::new();
    assign_active(&with_state, infos, &members, &mut owner);
    assign_active(&without, infos, &members, &mut owner);
    for (t, m) in &owner {
        if let Some(e) = out.get_mut(*m) {
            e.0.push(*t);
        }
    }
    // Standbys of stateful tasks, on other processes.
    let mut standby_load: BTreeMap<&str, usize> = members.iter().map(|m| (*m, 0)).collect();
    for &t in &with_state {
        let Some(active) = owner.get(&t) else {
            continue;
        };
        let mut used: BTreeSet<&str> = BTreeSet::from([infos[*active].process.as_str()]);
        for _ in 0..standbys {
            let candidates = || {
                members
                    .iter()
                    .copied()
                    .filter(|m| !used.contains(infos[m].process.as_str()))
            };
            let warm = |m: &&str| infos[*m].standby.contains(&t) || infos[*m].state.contains(&t);
            let pick = candidates()
                .filter(warm)
                .min_by_key(|m| (standby_load[m], *m))
                .or_else(|| candidates().min_by_key(|m| (standby_load[m], *m)));
            let Some(m) = pick else {
                break; // fewer processes than replicas
            };
            used.insert(infos[m].process.as_str());
            *standby_load.entry(m).or_default() += 1;
            if let Some(e) = out.get_mut(m) {
                e.1.push(t);
            }
        }
    }
    out
}

/// Balanced active assignment of `tasks`: sticky first, then warm, then least loaded.
fn assign_active<'a>(
    tasks: &[Tid],
    infos: &BTreeMap<&'a str, SubscriptionInfo>,
    members: &[&'a str],
    owner: &mut BTreeMap<Tid, &'a str>,
) {
    let cap = tasks.len().div_ceil(members.len());
    let mut load: BTreeMap<&str, usize> = members.iter().map(|m| (*m, 0)).collect();
    // 1. Sticky: stay with the previous active owner.
    for &t in tasks {
        let prev = members
            .iter()
            .find(|m| infos[*m].active.contains(&t) && load[*m] < cap);
        if let Some(m) = prev {
            owner.insert(t, m);
            *load.entry(m).or_default() += 1;
        }
    }
    // 2. The rest: a standby's member, then a process with state, then the least loaded.
    for &t in tasks {
        if owner.contains_key(&t) {
            continue;
        }
        let least = |pred: &dyn Fn(&str) -> bool| -> Option<&str> {
            members
                .iter()
                .copied()
                .filter(|m| pred(m) && load[m] < cap)
                .min_by_key(|m| (load[m], *m))
        };
        let m = least(&|m| infos[m].standby.contains(&t))
            .or_else(|| least(&|m| infos[m].state.contains(&t)))
            .or_else(|| least(&|_| true))
            .or_else(|| members.iter().copied().min_by_key(|m| (load[m], *m)));
        if let Some(m) = m {
            owner.insert(t, m);
            *load.entry(m).or_default() += 1;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn info(process: &str, active: &[Tid], standby: &[Tid], state: &[Tid]) -> SubscriptionInfo {
        SubscriptionInfo {
            process: process.into(),
            active: active.to_vec(),
            standby: standby.to_vec(),
            state: state.to_vec(),
            endpoint: None,
        }
    }

    fn tasks(n: i32) -> Vec<Tid> {
        (0..n).map(|p| (0, p)).collect()
    }

    fn all() -> BTreeSet<usize> {
        BTreeSet::from([0])
    }

    #[test]
    fn stateful_and_stateless_tasks_are_balanced_apart() {
        // a ran everything; b joins. Each gets half of the stateful subtopology 1.
        let everything: Vec<Tid> = (0..2).flat_map(|s| (0..4).map(move |p| (s, p))).collect();
        let mut infos = BTreeMap::new();
        infos.insert("a", info("p1", &everything, &[], &[]));
        infos.insert("b", info("p2", &[], &[], &[]));
        let p = plan(&everything, &BTreeSet::from([1]), &infos, 1);
        let stateful = |m: &str| p[m].0.iter().filter(|t| t.0 == 1).count();
        assert_eq!((stateful("a"), stateful("b")), (2, 2));
        assert!(
            p.values().all(|(_, s)| s.iter().all(|t| t.0 == 1)),
            "standbys only of stateful tasks"
        );
    }

    #[test]
    fn balanced_and_sticky() {
        let mut infos = BTreeMap::new();
        infos.insert("a", info("p1", &[(0, 0), (0, 1), (0, 2), (0, 3)], &[], &[]));
        infos.insert("b", info("p2", &[], &[], &[]));
        let p = plan(&tasks(4), &all(), &infos, 0);
        assert_eq!(p["a"].0.len(), 2);
        assert_eq!(p["b"].0.len(), 2);
        // a keeps two of the tasks it had, and nothing moves back and forth.
        let again: BTreeMap<&str, SubscriptionInfo> = [
            ("a", info("p1", &p["a"].0, &[], &[])),
            ("b", info("p2", &p["b"].0, &[], &[])),
        ]
        .into_iter()
        .collect();
        let q = plan(&tasks(4), &all(), &again, 0);
        assert_eq!(q["a"].0, p["a"].0);
        assert_eq!(q["b"].0, p["b"].0);
    }

    #[test]
    fn a_dead_member_s_tasks_go_to_its_standby() {
        // b died; c held standbys of its tasks 2 and 3; a has its own.
        let mut infos = BTreeMap::new();
        infos.insert("a", info("p1", &[(0, 0), (0, 1)], &[], &[]));
        infos.insert("c", info("p3", &[], &[(0, 2), (0, 3)], &[]));
        let p = plan(&tasks(4), &all(), &infos, 1);
        assert_eq!(p["a"].0, [(0, 0), (0, 1)]);
        assert_eq!(p["c"].0, [(0, 2), (0, 3)]);
        // Standbys of each task on the other process.
        assert_eq!(p["a"].1, [(0, 2), (0, 3)]);
        assert_eq!(p["c"].1, [(0, 0), (0, 1)]);
    }

    #[test]
    fn standbys_never_share_the_active_s_process() {
        let mut infos = BTreeMap::new();
        infos.insert("a1", info("p1", &[], &[], &[]));
        infos.insert("a2", info("p1", &[], &[], &[]));
        let p = plan(&tasks(4), &all(), &infos, 1);
        assert!(
            p["a1"].1.is_empty() && p["a2"].1.is_empty(),
            "one process: no standbys"
        );
        infos.insert("b1", info("p2", &[], &[], &[]));
        let p = plan(&tasks(6), &all(), &infos, 1);
        for (m, (active, _)) in &p {
            for t in active {
                let holders: Vec<&String> = p
                    .iter()
                    .filter(|(_, (_, s))| s.contains(t))
                    .map(|(m, _)| m)
                    .collect();
                assert_eq!(holders.len(), 1, "{t:?}: {holders:?}");
                assert_ne!(
                    &infos[holders[0].as_str()].process,
                    &infos[m.as_str()].process
                );
            }
        }
    }
}
