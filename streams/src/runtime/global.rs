//! The global thread: reads every partition of each global table's topic into the
//! instance's global stores, first to the end (before any stream thread starts), then on
//! as the topics change.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use strom_client::consumer::{Consumer, ConsumerConfig, IsolationLevel, OffsetReset};
use strom_client::TopicPartition;
use tokio::sync::watch;
use tracing::info;

use super::{ProcessingGuarantee, Shared};
use crate::error::StreamsError;
use crate::store::KeyValueStore;

pub(crate) struct GlobalReader {
    consumer: Consumer,
    /// Topic -> global table index.
    tables: HashMap<String, usize>,
}

impl GlobalReader {
    pub async fn new(shared: &Shared) -> Result<Self, StreamsError> {
        let config = &shared.config;
        let mut cc = ConsumerConfig::new(config.bootstrap_servers.clone());
        cc.enable_auto_commit = false;
        cc.auto_offset_reset = OffsetReset::Earliest;
        cc.fetch_max_wait = Duration::from_millis(100);
        if config.processing_guarantee == ProcessingGuarantee::ExactlyOnceV2 {
            cc.isolation_level = IsolationLevel::ReadCommitted;
        }
        let mut consumer = Consumer::new(cc)?;
        let mut tables = HashMap::new();
        let mut partitions = Vec::new();
        for (i, g) in shared.topo.globals.iter().enumerate() {
            tables.insert(g.topic.clone(), i);
            let n = shared.partition_counts.get(&g.topic).copied().unwrap_or(1);
            partitions.extend((0..n).map(|p| TopicPartition::new(g.topic.as_str(), p)));
        }
        consumer.assign(partitions).await?;
        Ok(Self { consumer, tables })
    }

    /// Reads to the end of every partition.
    pub async fn bootstrap(&mut self, shared: &Shared) -> Result<(), StreamsError> {
        let mut n = 0u64;
        loop {
            let records = self.consumer.poll(Duration::from_millis(200)).await?;
            if records.is_empty() && self.consumer.at_end() {
                break;
            }
            n += self.apply(shared, records)?;
        }
        info!(
            records = n,
            tables = self.tables.len(),
            "global tables bootstrapped"
        );
        Ok(())
    }

    fn apply(
        &self,
        shared: &Shared,
        records: Vec<strom_client::consumer::ConsumerRecord>,
    ) -> Result<u64, StreamsError> {
        let mut n = 0;
        for r in records {
            let (Some(&i), Some(key)) = (self.tables.get(&r.topic), r.key.as_deref()) else {
                continue;
            };
            if let Some(store) = shared.globals.get(i) {
                store.write().put(key, r.value.as_deref())?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Follows the topics until shutdown.
    pub async fn run(
        mut self,
        shared: &Arc<Shared>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<(), StreamsError> {
        while !*shutdown.borrow() {
            let records = self.consumer.poll(Duration::from_millis(100)).await?;
            self.apply(shared, records)?;
        }
        Ok(())
    }
}
