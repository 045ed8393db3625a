//! Group membership from the consumer's side of `poll`: when to rejoin, JoinGroup and
//! SyncGroup through the group task, the leader's assignment, and what the rebalance
//! listener sees (revoked before the partitions go, assigned after they come, lost when the
//! generation expired). See the module docs of [`super`] for the protocol rules.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;

use bytes::Bytes;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::group::Joined;
use super::{
    as_offsets, protocol, Assignor, Consumer, ConsumerError, MemberSubscription, Membership, Mode,
    OffsetAndMetadata, PartitionState, Position, RebalanceContext,
};
use crate::TopicPartition;

impl Consumer {
    /// Commits (auto-commit) and tells the listener before `revoked` go; then drops them.
    pub(super) async fn revoke(&mut self, revoked: &[TopicPartition]) {
        if revoked.is_empty() {
            return;
        }
        let positions: BTreeMap<TopicPartition, i64> = self
            .positions()
            .into_iter()
            .filter(|(tp, _)| revoked.contains(tp))
            .collect();
        if self.config.enable_auto_commit && !positions.is_empty() {
            if let Err(e) = self
                .commit_offsets_sync(as_offsets(positions.clone()))
                .await
            {
                warn!(error = %e, "committing revoked partitions failed");
            }
        }
        let mut ctx = RebalanceContext::new(positions);
        if let Some(l) = self.listener.as_mut() {
            l.on_partitions_revoked(revoked, &mut ctx);
        }
        ctx.run_deferred().await;
        self.commit_for_listener(ctx.commits).await;
        info!(partitions = ?revoked, "partitions revoked");
        self.drop_partitions(revoked);
    }

    pub(super) fn drop_partitions(&mut self, gone: &[TopicPartition]) {
        for tp in gone {
            self.partitions.remove(tp);
            self.committed_positions.remove(tp);
        }
    }

    /// Rejoins the group when it is rebalancing, this member was dropped, or (the leader)
    /// a subscribed topic's partition count changed.
    pub(super) async fn ensure_group(&mut self) -> Result<(), ConsumerError> {
        let (Mode::Subscribed(topics), Some(group)) = (&self.mode, &self.group) else {
            return Ok(());
        };
        let mut rejoin = group.flags.rejoin.load(Ordering::SeqCst) || self.membership.is_none();
        let check_metadata = self.last_metadata_check.elapsed() >= self.config.metadata_max_age;
        if !rejoin && !check_metadata {
            return Ok(()); // the common case, on every poll: nothing to do
        }
        let topics = topics.clone();
        let flags = group.flags.clone();
        if !rejoin {
            self.last_metadata_check = Instant::now();
            if let Some(m) = &self.membership {
                if m.leader {
                    // Every topic any member subscribes to (the counts the assignment used)
                    // and this member's own.
                    let mut wanted: BTreeSet<&str> =
                        m.partition_counts.keys().map(String::as_str).collect();
                    wanted.extend(topics.iter().map(String::as_str));
                    let wanted: Vec<&str> = wanted.into_iter().collect();
                    if self.cluster.metadata(Some(&wanted)).await.is_ok() {
                        let changed = wanted.iter().any(|t| {
                            self.cluster.partition_count(t) != m.partition_counts.get(*t).copied()
                        });
                        if changed {
                            info!("subscribed topics changed their partitions: rebalancing");
                            rejoin = true;
                        }
                    }
                }
            }
        }
        if !rejoin {
            return Ok(());
        }
        let result = self.rebalance(&topics).await;
        if result.is_err() {
            // Whatever failed (a timeout, the leader's metadata lookup), the next poll tries
            // again rather than sit in a generation that never completed.
            flags.rejoin.store(true, Ordering::SeqCst);
        }
        result
    }

    pub(super) fn cooperative(&self) -> bool {
        self.config.custom_assignor.is_none()
            && self.config.assignors.iter().all(|a| a.cooperative())
    }

    pub(super) async fn rebalance(&mut self, topics: &[String]) -> Result<(), ConsumerError> {
        let Some(flags) = self.group.as_ref().map(|g| g.flags.clone()) else {
            return Ok(());
        };
        let owned: Vec<TopicPartition> = self.partitions.keys().cloned().collect();
        if !flags.lost.load(Ordering::SeqCst) && !self.cooperative() {
            self.revoke(&owned).await;
        }
        loop {
            // A generation lost (before, or during the last attempt) gives up what it held
            // before the next JoinGroup, which then claims nothing.
            if flags.lost.swap(false, Ordering::SeqCst) {
                let owned: Vec<TopicPartition> = self.partitions.keys().cloned().collect();
                self.lose(&owned).await;
            }
            flags.rejoin.store(false, Ordering::SeqCst);
            let owned: Vec<TopicPartition> = self.partitions.keys().cloned().collect();
            let generation = self.membership.as_ref().map_or(-1, |m| m.generation);
            let protocols = self.protocols(topics, &owned, generation)?;
            let group = self.group.as_ref().ok_or(ConsumerError::Closed)?;
            let joined = match group.join(protocols).await {
                Ok(j) => j,
                Err(ConsumerError::Rebalance(why)) => {
                    debug!(reason = %why, "join refused; joining again");
                    continue;
                }
                Err(e) => return Err(e),
            };
            let (assignments, counts) = if joined.leader == joined.member_id {
                self.assign_as_leader(&joined).await?
            } else {
                (Vec::new(), BTreeMap::new())
            };
            let group = self.group.as_ref().ok_or(ConsumerError::Closed)?;
            match group.sync(assignments).await {
                Ok(bytes) => {
                    let (assigned, user_data) = protocol::decode_assignment_with_data(&bytes)?;
                    if let Some(c) = &self.config.custom_assignor {
                        let tps: Vec<TopicPartition> = assigned.iter().cloned().collect();
                        c.0.on_assignment(&tps, user_data.as_ref());
                    }
                    self.membership = Some(Membership {
                        generation: joined.generation,
                        member_id: joined.member_id.clone(),
                        leader: joined.leader == joined.member_id,
                        partition_counts: counts,
                    });
                    self.last_metadata_check = Instant::now();
                    self.apply_assignment(assigned).await;
                    flags.polled();
                    return Ok(());
                }
                Err(ConsumerError::Rebalance(why)) => {
                    debug!(reason = %why, "sync interrupted by a rebalance; joining again");
                    continue;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The listener's `on_partitions_lost`, then the partitions are gone (nothing committed).
    pub(super) async fn lose(&mut self, lost: &[TopicPartition]) {
        if lost.is_empty() {
            return;
        }
        warn!(partitions = ?lost, "partitions lost: this member's generation expired");
        let mut ctx = RebalanceContext::new(self.positions());
        if let Some(l) = self.listener.as_mut() {
            l.on_partitions_lost(lost, &mut ctx);
        }
        ctx.run_deferred().await;
        self.membership = None;
        self.drop_partitions(lost);
    }

    pub(super) async fn apply_assignment(&mut self, assigned: BTreeSet<TopicPartition>) {
        let owned: BTreeSet<TopicPartition> = self.partitions.keys().cloned().collect();
        let revoked: Vec<TopicPartition> = owned.difference(&assigned).cloned().collect();
        if !revoked.is_empty() {
            // Cooperative: give these up now, then rejoin so their new owner gets them.
            self.revoke(&revoked).await;
            if let Some(g) = &self.group {
                g.flags.rejoin.store(true, Ordering::SeqCst);
            }
        }
        let added: Vec<TopicPartition> = assigned.difference(&owned).cloned().collect();
        for tp in &added {
            self.partitions
                .insert(tp.clone(), PartitionState::new(Position::Committed));
        }
        info!(
            generation = self.generation().unwrap_or(-1),
            assigned = ?added,
            holding = self.partitions.len(),
            "partitions assigned"
        );
        let mut ctx = RebalanceContext::new(self.positions());
        if let Some(l) = self.listener.as_mut() {
            l.on_partitions_assigned(&added, &mut ctx);
        }
        ctx.run_deferred().await;
        for (tp, offset) in ctx.seeks {
            let _ = self.seek(&tp, offset);
        }
        self.commit_for_listener(ctx.commits).await;
    }

    /// What a rebalance listener asked to commit, committed before the rebalance goes on.
    pub(super) async fn commit_for_listener(
        &mut self,
        commits: Vec<(TopicPartition, OffsetAndMetadata)>,
    ) {
        if commits.is_empty() {
            return;
        }
        if let Err(e) = self.commit_offsets_sync(commits).await {
            warn!(error = %e, "the rebalance listener's commit failed");
        }
    }

    /// JoinGroup protocols: each assignor with this member's subscription (v3: topics,
    /// owned partitions, generation).
    pub(super) fn protocols(
        &self,
        topics: &[String],
        owned: &[TopicPartition],
        generation: i32,
    ) -> Result<Vec<(String, Bytes)>, ConsumerError> {
        if let Some(c) = &self.config.custom_assignor {
            let metadata =
                protocol::subscription(topics, owned, generation, c.0.subscription_user_data())?;
            return Ok(vec![(c.0.name().to_string(), metadata)]);
        }
        let metadata = protocol::subscription(topics, owned, generation, None)?;
        Ok(self
            .config
            .assignors
            .iter()
            .map(|a| (a.name().to_string(), metadata.clone()))
            .collect())
    }

    /// The leader's part: decode every member's subscription, look up the partitions, run
    /// the chosen assignor.
    pub(super) async fn assign_as_leader(
        &mut self,
        joined: &Joined,
    ) -> Result<(Vec<(String, Bytes)>, BTreeMap<String, i32>), ConsumerError> {
        let custom = self
            .config
            .custom_assignor
            .clone()
            .filter(|c| c.0.name() == joined.protocol);
        let assignor = Assignor::from_name(&joined.protocol);
        if custom.is_none() && assignor.is_none() {
            return Err(ConsumerError::Config(format!(
                "the group chose assignor '{}', which this consumer does not implement",
                joined.protocol
            )));
        }
        let members: Vec<MemberSubscription> = joined
            .members
            .iter()
            .map(|(id, instance, metadata)| {
                protocol::decode_subscription(id, instance.clone(), metadata)
            })
            .collect();
        let topics: BTreeSet<&str> = members
            .iter()
            .flat_map(|m| m.topics.iter().map(String::as_str))
            .collect();
        let topics: Vec<&str> = topics.into_iter().collect();
        self.cluster.metadata(Some(&topics)).await?;
        let counts: BTreeMap<String, i32> = topics
            .iter()
            .filter_map(|t| self.cluster.partition_count(t).map(|n| (t.to_string(), n)))
            .collect();
        let plan: BTreeMap<String, (Vec<TopicPartition>, Option<Bytes>)> = match (&custom, assignor)
        {
            (Some(c), _) => c.0.assign(&members, &counts),
            (None, Some(a)) => a
                .assign(&members, &counts)
                .into_iter()
                .map(|(m, tps)| (m, (tps, None)))
                .collect(),
            (None, None) => BTreeMap::new(),
        };
        info!(
            generation = joined.generation,
            assignor = %joined.protocol,
            members = members.len(),
            "computed the group's assignment as leader"
        );
        let out = plan
            .into_iter()
            .map(|(member, (tps, data))| Ok((member, protocol::assignment(&tps, data)?)))
            .collect::<Result<Vec<_>, ConsumerError>>()?;
        Ok((out, counts))
    }
}
