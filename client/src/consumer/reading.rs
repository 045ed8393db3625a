//! Reading from the consumer's side of `poll`: a position for every partition (committed
//! offset, else `auto.offset.reset` through ListOffsets), fetches to the leaders (one in
//! flight per broker, see [`super::fetcher`]), answers filed into per-partition buffers, and
//! records handed out in turns.

use std::collections::{BTreeMap, BTreeSet};

use futures::{FutureExt, StreamExt};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{BrokerId, ListOffsetsRequest};
use kafka_protocol::ResponseError;
use tokio::time::Instant;
use tracing::{debug, info};

use super::fetcher::{self, FetchLimits, FetchTarget, Fetched};
use super::{
    retriable_fetch_error, Consumer, ConsumerError, ConsumerRecord, IsolationLevel, Mode,
    OffsetReset, PartitionState, Position,
};
use crate::cluster::topic_name;
use crate::{BrokerError, TopicPartition};

impl Consumer {
    /// Finds a position for every partition that lacks one: the committed offset, else the
    /// reset policy through ListOffsets at the leader.
    pub(super) async fn resolve_positions(&mut self) -> Result<(), ConsumerError> {
        let want_committed: Vec<TopicPartition> = self
            .partitions
            .iter()
            .filter(|(_, st)| st.position == Position::Committed)
            .map(|(tp, _)| tp.clone())
            .collect();
        if !want_committed.is_empty() {
            let committed = match &self.group {
                Some(g) => g.committed(want_committed.clone()).await?,
                None => BTreeMap::new(),
            };
            for tp in want_committed {
                if let Some(st) = self.partitions.get_mut(&tp) {
                    if st.position != Position::Committed {
                        continue;
                    }
                    st.position = match committed.get(&tp) {
                        Some(o) => {
                            self.committed_positions.insert(tp.clone(), o.offset);
                            st.next_fetch = o.offset;
                            Position::Known(o.offset)
                        }
                        None => Position::Reset(self.config.auto_offset_reset),
                    };
                }
            }
        }
        let want_reset: Vec<(TopicPartition, OffsetReset)> = self
            .partitions
            .iter()
            .filter_map(|(tp, st)| match st.position {
                Position::Reset(r) => Some((tp.clone(), r)),
                _ => None,
            })
            .collect();
        if want_reset.is_empty() {
            return Ok(());
        }
        if let Some((tp, _)) = want_reset.iter().find(|(_, r)| *r == OffsetReset::None) {
            return Err(ConsumerError::NoOffset(tp.clone()));
        }
        self.refresh_metadata_for(want_reset.iter().map(|(tp, _)| tp.topic.as_str()))
            .await?;
        let mut by_leader: BTreeMap<i32, Vec<(TopicPartition, OffsetReset)>> = BTreeMap::new();
        for (tp, r) in want_reset {
            match self.cluster.leader(&tp.topic, tp.partition) {
                Some(l) if l.leader >= 0 => by_leader.entry(l.leader).or_default().push((tp, r)),
                _ => self.metadata_stale = true,
            }
        }
        for (leader, parts) in by_leader {
            let mut topics: Vec<ListOffsetsTopic> = Vec::new();
            for (tp, r) in &parts {
                let p = ListOffsetsPartition::default()
                    .with_partition_index(tp.partition)
                    .with_current_leader_epoch(-1)
                    .with_timestamp(if *r == OffsetReset::Earliest { -2 } else { -1 });
                match topics.iter_mut().find(|t| t.name.as_str() == tp.topic) {
                    Some(t) => t.partitions.push(p),
                    None => topics.push(
                        ListOffsetsTopic::default()
                            .with_name(topic_name(&tp.topic))
                            .with_partitions(vec![p]),
                    ),
                }
            }
            let req = ListOffsetsRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_isolation_level(self.config.isolation_level.code())
                .with_topics(topics);
            let answer = match self.cluster.broker(leader).await {
                Ok(conn) => conn.send(req, 7).await,
                Err(e) => Err(e),
            };
            let r = match answer {
                Ok(r) => r,
                Err(e) => {
                    debug!(broker = leader, error = %e, "ListOffsets failed; retrying");
                    self.cluster.drop_broker(leader);
                    self.metadata_stale = true;
                    continue;
                }
            };
            for t in &r.topics {
                for p in &t.partitions {
                    let tp = TopicPartition::new(t.name.as_str(), p.partition_index);
                    if p.error_code != 0 {
                        debug!(%tp, error = %crate::error_name(p.error_code), "ListOffsets refused");
                        self.metadata_stale = true;
                        continue;
                    }
                    if let Some(st) = self.partitions.get_mut(&tp) {
                        if matches!(st.position, Position::Reset(_)) {
                            st.position = Position::Known(p.offset);
                            st.next_fetch = p.offset;
                            st.buffer.clear();
                        }
                    }
                }
            }
        }
        if self.metadata_stale {
            tokio::time::sleep(self.config.retry_backoff).await;
        }
        Ok(())
    }

    /// Metadata for `topics` when it is stale or a partition has no known leader; a topic
    /// that does not exist is an error for a manual assignment, and waited for otherwise.
    pub(super) async fn refresh_metadata_for<'a>(
        &mut self,
        topics: impl Iterator<Item = &'a str>,
    ) -> Result<(), ConsumerError> {
        let topics: BTreeSet<String> = topics.map(str::to_string).collect();
        let unknown = topics
            .iter()
            .any(|t| self.cluster.partition_count(t).is_none());
        if !self.metadata_stale && !unknown {
            return Ok(());
        }
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        match self.cluster.metadata(Some(&names)).await {
            Ok(md) => {
                self.metadata_stale = false;
                if matches!(self.mode, Mode::Assigned) {
                    if let Some(t) = md
                        .topics
                        .iter()
                        .find(|t| t.error_code == ResponseError::UnknownTopicOrPartition.code())
                    {
                        let name = t.name.as_ref().map(|n| n.to_string()).unwrap_or_default();
                        return Err(ConsumerError::UnknownTopic(name));
                    }
                }
                Ok(())
            }
            Err(e) => {
                debug!(error = %e, "metadata refresh failed");
                self.cluster.reset();
                tokio::time::sleep(self.config.retry_backoff).await;
                Ok(())
            }
        }
    }

    /// Sends a fetch to every leader with fetchable partitions and none in flight, then
    /// waits (until `deadline`) for one answer and takes in every answer that is ready.
    pub(super) async fn fetch_round(&mut self, deadline: Instant) -> Result<(), ConsumerError> {
        let fetchable: Vec<TopicPartition> = self
            .partitions
            .iter()
            .filter(|(_, st)| {
                st.known().is_some() && st.buffer.is_empty() && !st.in_flight && !st.paused
            })
            .map(|(tp, _)| tp.clone())
            .collect();
        if !fetchable.is_empty() {
            self.refresh_metadata_for(fetchable.iter().map(|tp| tp.topic.as_str()))
                .await?;
        }
        let mut by_leader: BTreeMap<i32, Vec<FetchTarget>> = BTreeMap::new();
        let now = Instant::now();
        for tp in fetchable {
            let leader = self
                .cluster
                .leader(&tp.topic, tp.partition)
                .map_or(-1, |l| l.leader);
            if leader < 0 {
                self.metadata_stale = true;
                continue;
            }
            let Some(st) = self.partitions.get_mut(&tp) else {
                continue;
            };
            // The replica the leader sent us to (KIP-392) while it lasts, else the leader.
            let broker = match st.read_replica {
                Some((replica, until)) if until > now => replica,
                _ => {
                    st.read_replica = None;
                    leader
                }
            };
            if let Some(offset) = st.known() {
                by_leader
                    .entry(broker)
                    .or_default()
                    .push(FetchTarget { tp, offset });
            }
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        let limits = FetchLimits {
            max_wait_ms: self.config.fetch_max_wait.min(remaining).as_millis() as i32,
            min_bytes: self.config.fetch_min_bytes,
            max_bytes: self.config.fetch_max_bytes,
            partition_max_bytes: self.config.max_partition_fetch_bytes,
            isolation_level: self.config.isolation_level.code(),
        };
        for (broker, targets) in by_leader {
            if self.busy_brokers.contains(&broker) {
                continue;
            }
            let conn = match self.cluster.take(broker).await {
                Ok(c) => c,
                Err(e) => {
                    debug!(broker, error = %e, "cannot connect to the leader or read replica");
                    self.metadata_stale = true;
                    self.forget_read_replica(broker);
                    continue;
                }
            };
            for t in &targets {
                if let Some(st) = self.partitions.get_mut(&t.tp) {
                    st.in_flight = true;
                }
            }
            self.busy_brokers.insert(broker);
            let rack = self.config.client_rack.clone();
            self.inflight
                .push(fetcher::fetch(broker, conn, targets, limits, rack).boxed());
        }
        if self.inflight.is_empty() {
            let pause = self
                .config
                .retry_backoff
                .min(deadline.saturating_duration_since(Instant::now()));
            tokio::time::sleep(pause).await;
            return Ok(());
        }
        let first = tokio::time::timeout_at(deadline, self.inflight.next()).await;
        if let Ok(Some(f)) = first {
            self.take_in(f)?;
        }
        while let Some(Some(f)) = self.inflight.next().now_or_never() {
            self.take_in(f)?;
        }
        Ok(())
    }

    /// Files one fetch answer: records into the buffers of partitions still at the position
    /// they were fetched from; errors mark metadata stale or reset positions.
    pub(super) fn take_in(&mut self, f: Fetched) -> Result<(), ConsumerError> {
        self.busy_brokers.remove(&f.broker);
        for t in &f.targets {
            if let Some(st) = self.partitions.get_mut(&t.tp) {
                st.in_flight = false;
            }
        }
        match f.conn {
            Some(c) => self.cluster.put_back(f.broker, c),
            None => {
                self.cluster.drop_broker(f.broker);
                self.metadata_stale = true;
                self.forget_read_replica(f.broker);
            }
        }
        let r = match f.result {
            Ok(r) => r,
            Err(e) => {
                debug!(broker = f.broker, error = %e, "fetch failed");
                return Ok(());
            }
        };
        if r.error_code != 0 {
            debug!(broker = f.broker, error = %crate::error_name(r.error_code), "fetch refused");
            self.metadata_stale = true;
            return Ok(());
        }
        for t in &r.responses {
            for p in &t.partitions {
                let tp = TopicPartition::new(t.topic.as_str(), p.partition_index);
                let Some(target) = f.targets.iter().find(|x| x.tp == tp) else {
                    continue;
                };
                let Some(st) = self.partitions.get_mut(&tp) else {
                    continue; // revoked while the fetch was out
                };
                if st.position != Position::Known(target.offset) || !st.buffer.is_empty() {
                    continue; // sought elsewhere meanwhile
                }
                let code = p.error_code;
                if code == 0 && p.preferred_read_replica.0 >= 0 {
                    // The leader names a replica in our rack: read there from now on.
                    let until = Instant::now() + self.config.metadata_max_age;
                    debug!(%tp, replica = p.preferred_read_replica.0, "reading from the preferred read replica");
                    st.read_replica = Some((p.preferred_read_replica.0, until));
                    continue;
                }
                if code != 0 && st.read_replica.is_some_and(|(r, _)| r == f.broker) {
                    // The replica cannot serve it (any error): back to the leader, which
                    // answers for the partition and may name a replica again.
                    debug!(%tp, replica = f.broker, error = %crate::error_name(code), "read replica failed; back to the leader");
                    st.read_replica = None;
                    continue;
                }
                if code == 0 {
                    // What this consumer can read to: the last stable offset under
                    // read_committed.
                    st.high_watermark = Some(
                        if self.config.isolation_level == IsolationLevel::ReadCommitted
                            && p.last_stable_offset >= 0
                        {
                            p.last_stable_offset
                        } else {
                            p.high_watermark
                        },
                    );
                    let Some(data) = p.records.as_ref().filter(|d| !d.is_empty()) else {
                        continue;
                    };
                    let aborted: Vec<(i64, i64)> = p
                        .aborted_transactions
                        .iter()
                        .flatten()
                        .map(|a| (a.producer_id.0, a.first_offset))
                        .collect();
                    let (records, next) = fetcher::records(&tp, data, target.offset, &aborted)
                        .map_err(ConsumerError::Decode)?;
                    st.next_fetch = next;
                    if records.is_empty() {
                        st.position = Position::Known(next.max(target.offset));
                    } else {
                        st.buffer.extend(records);
                    }
                } else if code == ResponseError::OffsetOutOfRange.code() {
                    let policy = self.config.auto_offset_reset;
                    if policy == OffsetReset::None {
                        return Err(ConsumerError::OffsetOutOfRange {
                            tp,
                            offset: target.offset,
                        });
                    }
                    info!(%tp, offset = target.offset, reset = ?policy, "offset out of range; resetting");
                    st.position = Position::Reset(policy);
                } else if retriable_fetch_error(code) {
                    debug!(%tp, error = %crate::error_name(code), "refreshing metadata");
                    self.metadata_stale = true;
                } else {
                    return Err(ConsumerError::Broker(BrokerError::new(code, None)));
                }
            }
        }
        Ok(())
    }

    /// Stops reading from `broker` as a preferred read replica (it failed).
    fn forget_read_replica(&mut self, broker: i32) {
        for st in self.partitions.values_mut() {
            if st.read_replica.is_some_and(|(r, _)| r == broker) {
                st.read_replica = None;
            }
        }
    }

    /// Up to `max` buffered records, a partition at a time, starting at a different
    /// partition each call so none starves; positions move past what is returned.
    pub(super) fn drain(&mut self, max: usize) -> Vec<ConsumerRecord> {
        let mut out = Vec::new();
        let mut states: Vec<&mut PartitionState> = self
            .partitions
            .values_mut()
            .filter(|st| !st.buffer.is_empty() && !st.paused)
            .collect();
        if states.is_empty() {
            return out;
        }
        self.rotate = self.rotate.wrapping_add(1);
        let start = self.rotate % states.len();
        states.rotate_left(start);
        for st in states {
            if out.len() >= max {
                break;
            }
            while out.len() < max {
                let Some(r) = st.buffer.pop_front() else {
                    break;
                };
                st.position = Position::Known(r.offset + 1);
                out.push(r);
            }
            if st.buffer.is_empty() {
                if let Position::Known(p) = st.position {
                    st.position = Position::Known(p.max(st.next_fetch));
                }
            }
        }
        out
    }
}
