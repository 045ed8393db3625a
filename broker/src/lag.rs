//! End offsets of partitions this broker holds no replica of, for the lag of the groups it
//! coordinates (the console, `/v1/groups/{id}` and `kafka_consumergroup_lag`): asked of each
//! partition's leader with ListOffsets (latest, as a consumer would see it) every few
//! seconds, as Burrow and kafka-exporter do. Partitions with a replica here use its high
//! watermark directly.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{BrokerId, ListOffsetsRequest};
use parking_lot::Mutex;
use strom_client::cluster::topic_name;
use strom_storage::TopicPartition;
use tokio::sync::watch;
use tracing::debug;

use crate::Broker;

/// How often remote end offsets are asked for.
const REFRESH: Duration = Duration::from_secs(5);

/// (topic, partition) → the leader's high watermark, as last asked.
#[derive(Debug, Default)]
pub struct RemoteEnds {
    ends: Mutex<HashMap<(String, i32), i64>>,
}

impl RemoteEnds {
    pub fn get(&self, topic: &str, partition: i32) -> Option<i64> {
        self.ends
            .lock()
            .get(&(topic.to_string(), partition))
            .copied()
    }
}

/// Keeps [`RemoteEnds`] fresh until shutdown.
pub async fn refresh_loop(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(REFRESH);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        refresh(&broker).await;
    }
}

/// One round: every committed partition of the groups here without a local replica, asked
/// of its leader; entries no group needs any more are dropped.
async fn refresh(broker: &Broker) {
    let image = broker.image();
    // leader → topic → partitions
    let mut wanted: BTreeMap<i32, BTreeMap<String, Vec<i32>>> = BTreeMap::new();
    let mut needed = HashSet::new();
    for (group, _, _) in broker.groups.list() {
        for (topic, partition, _) in broker.groups.committed_all(&group) {
            let Some(t) = image.topic(&topic) else {
                continue;
            };
            let Some(p) = usize::try_from(partition)
                .ok()
                .and_then(|i| t.partitions.get(i))
            else {
                continue;
            };
            let local = broker
                .logs
                .get(&TopicPartition::new(t.topic_id, p.partition))
                .is_some();
            if local || p.leader < 0 {
                continue;
            }
            needed.insert((topic.clone(), partition));
            let ps = wanted
                .entry(p.leader)
                .or_default()
                .entry(topic.clone())
                .or_default();
            if !ps.contains(&partition) {
                ps.push(partition);
            }
        }
    }
    broker
        .remote_ends
        .ends
        .lock()
        .retain(|k, _| needed.contains(k));
    for (leader, topics) in wanted {
        match ask(broker, leader, &topics).await {
            Ok(ends) => broker.remote_ends.ends.lock().extend(ends),
            Err(e) => debug!(leader, error = %e, "end offsets for lag not fetched"),
        }
    }
}

/// ListOffsets (latest) of `topics` from broker `leader`.
async fn ask(
    broker: &Broker,
    leader: i32,
    topics: &BTreeMap<String, Vec<i32>>,
) -> anyhow::Result<Vec<((String, i32), i64)>> {
    let image = broker.image();
    let addr = image
        .brokers
        .get(&leader)
        .and_then(|b| b.inter_broker_addr())
        .ok_or_else(|| anyhow::anyhow!("broker {leader} has no Kafka endpoint"))?;
    let request = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(
            topics
                .iter()
                .map(|(t, ps)| {
                    ListOffsetsTopic::default()
                        .with_name(topic_name(t))
                        .with_partitions(
                            ps.iter()
                                .map(|p| {
                                    ListOffsetsPartition::default()
                                        .with_partition_index(*p)
                                        .with_current_leader_epoch(-1)
                                        .with_timestamp(-1)
                                })
                                .collect(),
                        )
                })
                .collect(),
        );
    let response = tokio::time::timeout(Duration::from_secs(5), async {
        let mut conn = broker.inter_broker_security.connect(&addr).await?;
        conn.send(request, 7).await
    })
    .await??;
    Ok(response
        .topics
        .into_iter()
        .flat_map(|t| {
            let name = t.name.to_string();
            t.partitions
                .into_iter()
                .filter(|p| p.error_code == 0)
                .map(move |p| ((name.clone(), p.partition_index), p.offset))
        })
        .collect())
}
