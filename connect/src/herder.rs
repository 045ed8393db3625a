//! The herder: makes this worker run what it owns of the configs it has read.
//!
//! ```text
//!   config store (watch) ─┐
//!   membership (watch) ───┼─▶ reconcile ─▶ connectors it owns: status, task configs made again
//!   every 2 s ────────────┘               tasks it owns: started, stopped, restarted, paused
//! ```
//!
//! Ownership is a pure function of the membership (the group's workers, in the same order
//! everywhere) and a unit's name: a connector goes to `members[h(name) % n]`, its task `i`
//! to `members[(h(name) + 1 + i) % n]`. Every worker computes the same answer from the same
//! config and membership, so the group's leader only has to hand out the member list; a new
//! connector needs no rebalance, and a worker joining or leaving moves only what the new
//! membership says. A task that fails is restarted with exponential backoff
//! (`task.restart.backoff.ms` .. `task.restart.backoff.max.ms`), its status FAILED with the
//! error in between.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::plugin::ConnectorType;
use crate::props::Props;
use crate::store::{config_hash, ClusterConfig, ConfigOp, Status, StatusKey, TargetState};
use crate::worker::{plugin_for, run_sink, run_source, TaskId, Worker};

/// Who is in the worker group, in the same order on every worker.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Membership {
    /// Worker ids (their REST `host:port`), sorted.
    pub members: Vec<String>,
    /// The leader's REST URL, where followers forward writes.
    pub leader_url: Option<String>,
}

/// FNV-1a: a hash every worker computes alike (it decides who runs what).
pub fn stable_hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl Membership {
    pub fn connector_owner(&self, name: &str) -> Option<&str> {
        let n = self.members.len() as u64;
        (n > 0).then(|| self.members[(stable_hash(name) % n) as usize].as_str())
    }

    pub fn task_owner(&self, name: &str, task: usize) -> Option<&str> {
        let n = self.members.len() as u64;
        (n > 0).then(|| self.members[((stable_hash(name) + 1 + task as u64) % n) as usize].as_str())
    }
}

struct RunningTask {
    /// Connector and task config hashes: a change restarts the task.
    hash: String,
    stop: watch::Sender<bool>,
    handle: JoinHandle<()>,
}

pub struct Herder {
    pub worker: Arc<Worker>,
    pub membership: watch::Receiver<Arc<Membership>>,
    tasks: Mutex<HashMap<(String, usize), RunningTask>>,
    /// Connectors whose status this worker wrote, with the state it wrote.
    connectors: Mutex<HashMap<String, String>>,
    restarts_seen: Mutex<HashMap<String, String>>,
}

impl Herder {
    pub fn new(worker: Arc<Worker>, membership: watch::Receiver<Arc<Membership>>) -> Arc<Self> {
        Arc::new(Self {
            worker,
            membership,
            tasks: Mutex::new(HashMap::new()),
            connectors: Mutex::new(HashMap::new()),
            restarts_seen: Mutex::new(HashMap::new()),
        })
    }

    /// Starts the reconcile loop.
    pub fn start(self: &Arc<Self>) -> JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let mut configs = me.worker.configs.watch();
            let mut membership = me.membership.clone();
            // A fixed membership (standalone) never changes: its channel may be closed.
            let mut membership_open = true;
            loop {
                me.reconcile().await;
                tokio::select! {
                    r = configs.changed() => if r.is_err() { return },
                    r = membership.changed(), if membership_open => membership_open = r.is_ok(),
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                }
            }
        })
    }

    /// Tasks running here, by connector (for `/metrics`).
    pub fn running(&self) -> Vec<(String, usize)> {
        let mut by: HashMap<String, usize> = HashMap::new();
        for (c, _) in self.tasks.lock().keys() {
            *by.entry(c.clone()).or_default() += 1;
        }
        let mut v: Vec<_> = by.into_iter().collect();
        v.sort();
        v
    }

    fn status(&self, state: &str, trace: Option<String>) -> Status {
        Status {
            state: state.into(),
            trace,
            worker_id: self.worker.id.clone(),
        }
    }

    async fn reconcile(self: &Arc<Self>) {
        let cfg: Arc<ClusterConfig> = self.worker.configs.watch().borrow().clone();
        let m: Arc<Membership> = self.membership.borrow().clone();
        let me = self.worker.id.as_str();
        let mut restart_tasks: HashSet<(String, usize)> = HashSet::new();

        // Connectors this worker owns: their status and their task configs.
        let mut owned = HashMap::new();
        for (name, e) in &cfg.connectors {
            if m.connector_owner(name) != Some(me) {
                continue;
            }
            let state = match plugin_for(&self.worker, &e.config) {
                Err(err) => ("FAILED", Some(err.to_string())),
                Ok(plugin) => {
                    let mut failure = None;
                    if e.target != TargetState::Stopped && e.current_tasks().is_none() {
                        failure = self
                            .make_task_configs(name, &e.config, &*plugin)
                            .await
                            .err();
                    }
                    match (failure, e.target) {
                        (Some(err), _) => ("FAILED", Some(err)),
                        (None, TargetState::Started) => ("RUNNING", None),
                        (None, TargetState::Paused) => ("PAUSED", None),
                        (None, TargetState::Stopped) => ("STOPPED", None),
                    }
                }
            };
            owned.insert(name.clone(), state.0.to_string());
            let before = self.connectors.lock().get(name).cloned();
            if before.as_deref() != Some(state.0) {
                let status = self.status(state.0, state.1);
                self.worker
                    .statuses
                    .put(StatusKey::Connector(name.clone()), Some(status))
                    .await;
            }
        }
        *self.connectors.lock() = owned;

        // Restart requests, each applied once, to the tasks this worker runs. (A connector
        // itself has nothing running to restart: its status and task configs are remade on
        // every pass.)
        for (name, e) in &cfg.connectors {
            let Some(r) = &e.restart else { continue };
            let seen = self.restarts_seen.lock().insert(name.clone(), r.id.clone());
            if seen.as_deref() == Some(r.id.as_str()) {
                continue;
            }
            info!(connector = %name, request = %r.id, "restart requested");
            let statuses = self.worker.statuses.all();
            for (n, t) in self.tasks.lock().keys() {
                if n != name {
                    continue;
                }
                let wanted = match r.task {
                    Some(only) => only == *t,
                    None => r.include_tasks,
                };
                let failed = statuses
                    .get(&StatusKey::Task(n.clone(), *t))
                    .is_some_and(|s| s.state == "FAILED");
                if wanted && (!r.only_failed || failed || r.task.is_some()) {
                    restart_tasks.insert((n.clone(), *t));
                }
            }
        }

        // The tasks this worker should run now.
        let mut desired: HashMap<(String, usize), (Props, Props, String)> = HashMap::new();
        let mut paused = Vec::new();
        for (name, e) in &cfg.connectors {
            let Some(tasks) = e.current_tasks() else {
                continue;
            };
            for (i, t) in tasks.iter().enumerate() {
                if m.task_owner(name, i) != Some(me) {
                    continue;
                }
                match e.target {
                    TargetState::Started => {
                        let hash = format!("{}/{}", config_hash(&e.config), config_hash(t));
                        desired.insert((name.clone(), i), (e.config.clone(), t.clone(), hash));
                    }
                    TargetState::Paused => paused.push((name.clone(), i)),
                    TargetState::Stopped => {}
                }
            }
        }

        // Stop what is no longer wanted here (or changed, or asked to restart).
        let stopping: Vec<((String, usize), RunningTask)> = {
            let mut running = self.tasks.lock();
            let keys: Vec<_> = running
                .iter()
                .filter(|(k, rt)| {
                    desired.get(*k).is_none_or(|(_, _, h)| *h != rt.hash)
                        || restart_tasks.contains(*k)
                        || rt.handle.is_finished()
                })
                .map(|(k, _)| k.clone())
                .collect();
            keys.into_iter()
                .filter_map(|k| running.remove(&k).map(|rt| (k, rt)))
                .collect()
        };
        for ((name, i), rt) in stopping {
            info!(connector = %name, task = i, "stopping task");
            let _ = rt.stop.send(true);
            if tokio::time::timeout(Duration::from_secs(30), rt.handle)
                .await
                .is_err()
            {
                warn!(connector = %name, task = i, "task did not stop within 30 s");
            }
            let key = StatusKey::Task(name.clone(), i);
            if let Some(e) = cfg.connectors.get(&name) {
                if e.target == TargetState::Stopped && m.task_owner(&name, i) == Some(me) {
                    self.worker.statuses.put(key, None).await;
                }
            }
        }
        let statuses = self.worker.statuses.all();
        for (name, i) in paused {
            let key = StatusKey::Task(name, i);
            if statuses
                .get(&key)
                .is_none_or(|s| s.state != "PAUSED" || s.worker_id != me)
            {
                self.worker
                    .statuses
                    .put(key, Some(self.status("PAUSED", None)))
                    .await;
            }
        }

        // Start what should run here and does not.
        for ((name, i), (connector, task_config, hash)) in desired {
            if self.tasks.lock().contains_key(&(name.clone(), i)) {
                continue;
            }
            let kind = match plugin_for(&self.worker, &connector) {
                Ok(p) => p.kind(),
                Err(_) => continue,
            };
            let (stop, stop_rx) = watch::channel(false);
            let id = TaskId {
                connector: name.clone(),
                task: i,
            };
            info!(task = %id, "starting task");
            let handle = tokio::spawn(supervise(
                self.worker.clone(),
                id,
                kind,
                connector,
                task_config,
                stop_rx,
            ));
            self.tasks
                .lock()
                .insert((name, i), RunningTask { hash, stop, handle });
        }
    }

    async fn make_task_configs(
        &self,
        name: &str,
        config: &Props,
        plugin: &dyn crate::plugin::ConnectorPlugin,
    ) -> Result<(), String> {
        let max = config
            .get("tasks.max")
            .and_then(|t| t.parse().ok())
            .unwrap_or(1usize)
            .max(1);
        let tasks = plugin
            .task_configs(config, max)
            .map_err(|e| e.to_string())?;
        let tasks: Vec<Props> = tasks.into_iter().take(max).collect();
        info!(connector = %name, tasks = tasks.len(), "task configs made");
        self.worker
            .configs
            .write(ConfigOp::Tasks(
                name.to_string(),
                config_hash(config),
                tasks,
            ))
            .await
            .map_err(|e| e.to_string())
    }

    /// Stops every task (worker shutdown); offsets are committed on the way out.
    pub async fn shutdown(&self) {
        let all: Vec<_> = self.tasks.lock().drain().collect();
        for (_, rt) in &all {
            let _ = rt.stop.send(true);
        }
        for (_, rt) in all {
            let _ = tokio::time::timeout(Duration::from_secs(30), rt.handle).await;
        }
    }
}

/// Runs a task, restarting it with backoff when it fails, until told to stop.
async fn supervise(
    w: Arc<Worker>,
    id: TaskId,
    kind: ConnectorType,
    connector: Props,
    task_config: Props,
    mut stop: watch::Receiver<bool>,
) {
    let initial = w.ms("task.restart.backoff.ms", 1_000);
    let max = w.ms("task.restart.backoff.max.ms", 60_000);
    let never = w
        .setting("task.restart.backoff.ms")
        .is_some_and(|v| v.starts_with('-'));
    let mut backoff = initial;
    let key = StatusKey::Task(id.connector.clone(), id.task);
    let status = |state: &str, trace: Option<String>| Status {
        state: state.into(),
        trace,
        worker_id: w.id.clone(),
    };
    loop {
        w.statuses
            .put(key.clone(), Some(status("RUNNING", None)))
            .await;
        let result = match kind {
            ConnectorType::Source => {
                run_source(
                    w.clone(),
                    id.clone(),
                    connector.clone(),
                    task_config.clone(),
                    stop.clone(),
                )
                .await
            }
            ConnectorType::Sink => {
                run_sink(
                    w.clone(),
                    id.clone(),
                    connector.clone(),
                    task_config.clone(),
                    stop.clone(),
                )
                .await
            }
        };
        if *stop.borrow() {
            return;
        }
        let trace = match result {
            Ok(()) => "the task stopped on its own".to_string(),
            Err(e) => format!("{e:#}"),
        };
        warn!(task = %id, error = %trace, backoff_ms = backoff.as_millis() as u64, "task failed");
        w.statuses
            .put(key.clone(), Some(status("FAILED", Some(trace))))
            .await;
        if never {
            let _ = stop.changed().await;
            return;
        }
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        w.metrics.record_restart(&id.connector);
        backoff = (backoff * 2).min(max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ownership_spreads_tasks_and_is_the_same_everywhere() {
        let m = Membership {
            members: vec!["a:1".into(), "b:2".into()],
            leader_url: None,
        };
        let owners: Vec<_> = (0..4).map(|i| m.task_owner("sink", i)).collect();
        assert_eq!(owners.iter().filter(|o| **o == Some("a:1")).count(), 2);
        assert_eq!(m.clone().task_owner("sink", 3), owners[3]);
        let alone = Membership {
            members: vec!["b:2".into()],
            ..m
        };
        assert!((0..4).all(|i| alone.task_owner("sink", i) == Some("b:2")));
        assert_eq!(Membership::default().connector_owner("x"), None);
    }
}
