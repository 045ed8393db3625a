//! The worker group of distributed mode, through the broker's group coordinator.
//!
//! Workers sharing a `group.id` join one group with the assignor `strom-connect`. Each
//! member's subscription carries its worker id, its REST URL and the cluster's config and
//! status topics (the broker's console reads the connectors and their states from those);
//! the leader hands every member
//! the sorted member list and its own URL. Nothing else is assigned: each worker derives what
//! it runs from the member list and the config topic (see `herder`), so a new connector
//! never needs a rebalance, and a worker that dies is dropped after `session.timeout.ms`,
//! when the survivors' next generation takes over its connectors and tasks.
//!
//! The member is a consumer of the config topic that is assigned no partitions: its `poll`
//! drives joins, syncs and heartbeats in the background, the way Kafka's consumer does.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value as Json};
use strom_client::consumer::{
    Consumer, ConsumerConfig, CustomAssignor, MemberSubscription, PartitionAssignor,
};
use strom_client::TopicPartition;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::herder::Membership;

struct WorkerAssignor {
    id: String,
    url: String,
    config_topic: String,
    status_topic: String,
    tx: watch::Sender<Arc<Membership>>,
}

impl PartitionAssignor for WorkerAssignor {
    fn name(&self) -> &str {
        "strom-connect"
    }

    fn subscription_user_data(&self) -> Option<Bytes> {
        Some(Bytes::from(
            json!({
                "id": self.id,
                "url": self.url,
                "config_topic": self.config_topic,
                "status_topic": self.status_topic,
            })
            .to_string(),
        ))
    }

    fn assign(
        &self,
        members: &[MemberSubscription],
        _partitions: &BTreeMap<String, i32>,
    ) -> BTreeMap<String, (Vec<TopicPartition>, Option<Bytes>)> {
        let mut ids: Vec<String> = members
            .iter()
            .filter_map(|m| {
                let d: Json = serde_json::from_slice(m.user_data.as_deref()?).ok()?;
                d["id"].as_str().map(str::to_string)
            })
            .collect();
        ids.sort();
        ids.dedup();
        let data = Bytes::from(json!({"leader_url": self.url, "members": ids}).to_string());
        info!(workers = ?ids, "assigning the worker group as its leader");
        members
            .iter()
            .map(|m| (m.member_id.clone(), (Vec::new(), Some(data.clone()))))
            .collect()
    }

    fn on_assignment(&self, _partitions: &[TopicPartition], user_data: Option<&Bytes>) {
        let Some(d) = user_data.and_then(|b| serde_json::from_slice::<Json>(b).ok()) else {
            warn!("an assignment without worker data");
            return;
        };
        let members = d["members"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let leader_url = d["leader_url"].as_str().map(str::to_string);
        self.tx.send_replace(Arc::new(Membership {
            members,
            leader_url,
        }));
        info!(membership = ?self.tx.borrow().members, leader = ?self.tx.borrow().leader_url, "joined the worker group");
    }
}

/// Joins the worker group and keeps this worker in it; the watch follows the membership.
#[allow(clippy::too_many_arguments)]
pub async fn join(
    bootstrap: &str,
    group_id: &str,
    config_topic: &str,
    status_topic: &str,
    id: &str,
    url: &str,
    session_timeout: Duration,
    heartbeat: Duration,
    rebalance_timeout: Duration,
) -> anyhow::Result<(watch::Receiver<Arc<Membership>>, GroupHandle)> {
    let (tx, rx) = watch::channel(Arc::new(Membership::default()));
    let assignor = WorkerAssignor {
        id: id.to_string(),
        url: url.to_string(),
        config_topic: config_topic.to_string(),
        status_topic: status_topic.to_string(),
        tx,
    };
    let mut cc = ConsumerConfig::new(bootstrap);
    cc.group_id = Some(group_id.to_string());
    cc.enable_auto_commit = false;
    cc.session_timeout = session_timeout;
    cc.heartbeat_interval = heartbeat;
    cc.max_poll_interval = rebalance_timeout;
    cc.custom_assignor = Some(CustomAssignor(Arc::new(assignor)));
    let mut consumer = Consumer::new(cc)?;
    consumer.subscribe(&[config_topic])?;
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = &mut stopped => break,
                r = consumer.poll(Duration::from_millis(500)) => {
                    if let Err(e) = r {
                        warn!(error = %e, "worker group membership failed; rejoining");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        }
        // Leaving at once lets the others take over now, not after the session timeout.
        consumer.close().await;
    });
    Ok((rx, GroupHandle { stop, handle }))
}

/// Keeps the worker in its group until [`GroupHandle::leave`].
pub struct GroupHandle {
    stop: tokio::sync::oneshot::Sender<()>,
    handle: tokio::task::JoinHandle<()>,
}

impl GroupHandle {
    pub async fn leave(self) {
        let _ = self.stop.send(());
        let _ = self.handle.await;
    }
}
