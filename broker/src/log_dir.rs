//! The broker's log directory as the controller's replica balancer sees it: every
//! `--log-dir-report-interval-ms` the broker reports each partition replica's size, its
//! capacity (`--log-dir-capacity-bytes`, by default the size of the file system holding
//! `--data-dir`) and the file system's free space.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use metadata_quorum::quorum::rpc::LogDirReport;
use tokio::sync::watch;
use tracing::debug;

use crate::Broker;

/// The size and the space an unprivileged process may still use of the file system holding
/// `path` (statvfs), or None if it cannot be read.
pub fn fs_space(path: &Path) -> Option<(u64, u64)> {
    let st = rustix::fs::statvfs(path).ok()?;
    Some((st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize))
}

/// What this broker holds now.
pub fn report(broker: &Broker) -> LogDirReport {
    let fs = fs_space(&broker.config.data_dir);
    let mut partitions: Vec<_> = broker
        .logs
        .all()
        .iter()
        .map(|log| {
            let tp = log.topic_partition();
            (tp.topic_id, tp.partition, log.state().size_bytes)
        })
        .collect();
    partitions.sort_unstable();
    LogDirReport {
        capacity_bytes: broker
            .config
            .log_dir_capacity_bytes
            .or(fs.map(|(total, _)| total))
            .unwrap_or(0),
        fs_total_bytes: fs.map(|(total, _)| total),
        fs_usable_bytes: fs.map(|(_, usable)| usable),
        partitions,
        report_interval_ms: broker.config.log_dir_report_interval_ms,
    }
}

/// Reports the log directory to the controller until shutdown.
pub async fn report_loop(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_millis(
        broker.config.log_dir_report_interval_ms,
    ));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let report = report(&broker);
        match broker.controller.report_log_dir(report).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => debug!(error = %e, "log dir report refused"),
            Err(e) => debug!(error = %e, "log dir report failed"),
        }
    }
}
