//! A stream thread: one consumer in the application's group, one producer, and the tasks
//! of the partitions the group gave it.
//!
//! ```text
//!  loop: poll ─▶ (rebalance callbacks: commit+close revoked tasks, open+restore assigned)
//!        ─▶ process records through their tasks ─▶ send outputs ─▶ commit when due
//! ```
//!
//! A failure that means "someone else owns these tasks now" (fenced producer, stale
//! generation) or a cluster error drops the tasks uncommitted and starts the thread's
//! clients afresh; what was not committed is processed again (and, under exactly-once,
//! its transaction is aborted, so nobody downstream saw it).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use strom_client::consumer::{
    Consumer, ConsumerConfig, CustomAssignor, IsolationLevel, OffsetAndMetadata, OffsetReset,
    RebalanceContext, RebalanceListener,
};
use strom_client::producer::{Producer, ProducerConfig};
use strom_client::TopicPartition;
use tokio::sync::{watch, Mutex};
use tracing::{error, info, warn};

use super::assignor::{StreamsAssignor, ThreadAssignment};
use super::tasks::TaskManager;
use super::{ProcessingGuarantee, Shared};
use crate::error::StreamsError;

/// Runs one stream thread until shutdown or a fatal error.
pub(crate) async fn run(
    shared: Arc<Shared>,
    index: usize,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), StreamsError> {
    let mut backoff = Duration::from_millis(100);
    loop {
        match run_once(&shared, index, &mut shutdown).await {
            Ok(()) => return Ok(()),
            Err(e) if recoverable(&e) => {
                warn!(thread = index, error = %e, "stream thread restarting its clients");
                shared.metrics.restarts.fetch_add(1, Ordering::Relaxed);
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.changed() => return Ok(()),
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            Err(e) => {
                error!(thread = index, error = %e, "stream thread failed");
                return Err(e);
            }
        }
    }
}

fn recoverable(e: &StreamsError) -> bool {
    matches!(
        e,
        StreamsError::TaskMigrated(_) | StreamsError::Producer(_) | StreamsError::Consumer(_)
    )
}

async fn run_once(
    shared: &Arc<Shared>,
    index: usize,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), StreamsError> {
    let config = &shared.config;
    let eos = config.processing_guarantee == ProcessingGuarantee::ExactlyOnceV2;
    let mut pc = ProducerConfig::new(config.bootstrap_servers.clone());
    pc.linger = Duration::from_millis(5);
    pc.batch_size = 64 * 1024;
    if eos {
        pc.transactional_id = Some(format!(
            "{}-{}-{}",
            config.application_id, shared.process_id, index
        ));
        pc.transaction_timeout = config.transaction_timeout;
    }
    let producer = Arc::new(Producer::new(pc).await?);
    if eos {
        producer.init_transactions().await?;
    }
    let current = Arc::new(parking_lot::Mutex::new(ThreadAssignment::default()));
    let tm = Arc::new(Mutex::new(TaskManager::new(
        shared.clone(),
        producer.clone(),
        current.clone(),
    )));

    shared.managers.lock().push(tm.clone());
    let result = run_with(shared, index, shutdown, eos, tm.clone(), current).await;
    shared.managers.lock().retain(|m| !Arc::ptr_eq(m, &tm));
    result
}

async fn run_with(
    shared: &Arc<Shared>,
    index: usize,
    shutdown: &mut watch::Receiver<bool>,
    eos: bool,
    tm: Arc<Mutex<TaskManager>>,
    current: Arc<parking_lot::Mutex<ThreadAssignment>>,
) -> Result<(), StreamsError> {
    let config = &shared.config;
    let mut cc = ConsumerConfig::new(config.bootstrap_servers.clone());
    cc.group_id = Some(config.application_id.clone());
    cc.enable_auto_commit = false;
    cc.auto_offset_reset = OffsetReset::Earliest;
    cc.custom_assignor = Some(CustomAssignor(Arc::new(StreamsAssignor {
        shared: shared.clone(),
        current,
    })));
    cc.max_poll_records = config.max_poll_records;
    cc.session_timeout = config.session_timeout;
    cc.heartbeat_interval = config.heartbeat_interval;
    cc.fetch_max_wait = Duration::from_millis(100);
    if eos {
        cc.isolation_level = IsolationLevel::ReadCommitted;
    }
    let mut consumer = Consumer::new(cc)?;
    consumer.set_rebalance_listener(Listener {
        tm: tm.clone(),
        eos,
    });
    let topics = shared.subscribed.clone();
    let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics)?;
    info!(thread = index, topics = ?topics, guarantee = ?config.processing_guarantee, "stream thread started");

    let result = async {
        loop {
            if *shutdown.borrow() {
                return Ok(());
            }
            // Not raced against shutdown: a poll cut short mid-rebalance would leave the
            // group half joined. It returns within 100 ms anyway.
            let records = consumer.poll(Duration::from_millis(100)).await?;
            let mut t = tm.lock().await;
            if let Some(e) = t.error.take() {
                return Err(e);
            }
            t.group = consumer.group_metadata();
            t.sync_standbys().await?;
            // What each partition still has to hand out, for tasks waiting on an empty one.
            let lags: std::collections::HashMap<TopicPartition, i64> = consumer
                .assignment()
                .into_iter()
                .filter_map(|tp| Some((tp.clone(), consumer.current_lag(&tp)?)))
                .collect();
            t.process(records, |tp| lags.get(tp).copied()).await?;
            // Partitions whose records wait in their task's queue stop being fetched.
            let (pause, resume) = t.backpressure();
            consumer.pause(&pause);
            consumer.resume(&resume);
            t.update_standbys().await?;
            t.punctuate_wall_clock().await?;
            if t.commit_due() {
                commit(&mut t, &mut consumer, eos).await?;
            }
        }
    }
    .await;

    match result {
        Ok(()) => {
            // Clean shutdown: commit, then leave the group (the revocation closes every
            // task cleanly, with checkpoints).
            {
                let mut t = tm.lock().await;
                t.group = consumer.group_metadata();
                commit(&mut t, &mut consumer, eos).await?;
            }
            consumer.close().await;
            let mut t = tm.lock().await;
            if let Some(e) = t.error.take() {
                return Err(e);
            }
            t.close_standbys()?;
            info!(thread = index, "stream thread stopped cleanly");
            Ok(())
        }
        Err(e) => {
            {
                let mut t = tm.lock().await;
                t.closing_dirty = true;
                let ids = t.task_ids();
                t.close_dirty(&ids).await;
            }
            consumer.close().await;
            Err(e)
        }
    }
}

async fn commit(
    t: &mut TaskManager,
    consumer: &mut Consumer,
    eos: bool,
) -> Result<(), StreamsError> {
    t.maintain().await?;
    if eos {
        t.commit_transaction().await?;
        t.purge_repartitions().await;
        return Ok(());
    }
    let offsets = t.flush_for_commit().await?;
    if offsets.is_empty() {
        return Ok(());
    }
    consumer
        .commit_offsets_sync(
            offsets
                .into_iter()
                .map(|(tp, o)| (tp, OffsetAndMetadata::new(o)))
                .collect(),
        )
        .await
        .map_err(|e| StreamsError::TaskMigrated(format!("offset commit failed: {e}")))?;
    t.committed()?;
    t.purge_repartitions().await;
    Ok(())
}

/// Ties the group's rebalances to the tasks: commit and close before partitions go, open
/// and restore before the new ones are read.
struct Listener {
    tm: Arc<Mutex<TaskManager>>,
    eos: bool,
}

impl RebalanceListener for Listener {
    fn on_partitions_revoked(&mut self, revoked: &[TopicPartition], ctx: &mut RebalanceContext) {
        if !self.eos {
            // At least once, the consumer commits these offsets after the deferred flush.
            // The thread never holds the lock while it polls, so this does not wait.
            match self.tm.try_lock() {
                Ok(t) if !t.closing_dirty => {
                    for (tp, offset) in t.offsets(Some(revoked)) {
                        ctx.commit(tp, offset);
                    }
                }
                Ok(_) => {}
                Err(_) => warn!("task manager busy during revocation: offsets not committed"),
            }
        }
        let tm = self.tm.clone();
        let revoked = revoked.to_vec();
        ctx.defer(async move {
            let mut t = tm.lock().await;
            if let Err(e) = t.revoke(&revoked).await {
                t.error.get_or_insert(e);
            }
        });
    }

    fn on_partitions_assigned(&mut self, assigned: &[TopicPartition], ctx: &mut RebalanceContext) {
        let tm = self.tm.clone();
        let assigned = assigned.to_vec();
        ctx.defer(async move {
            let mut t = tm.lock().await;
            if let Err(e) = t.open(&assigned).await {
                t.error.get_or_insert(e);
            }
        });
    }

    fn on_partitions_lost(&mut self, lost: &[TopicPartition], ctx: &mut RebalanceContext) {
        let tm = self.tm.clone();
        let lost = lost.to_vec();
        ctx.defer(async move {
            tm.lock().await.lose(&lost).await;
        });
    }
}
