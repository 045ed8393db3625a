//! The leader's view of one partition's replicas, as pure state: follower fetches and the
//! clock go in, the high watermark and ISR changes come out. Nothing here does I/O or reads
//! the clock, so every rule is tested by feeding it inputs.
//!
//! The rules are Kafka's (`Partition.scala`):
//! - A follower's log end offset is the offset it fetches from. It is *caught up* at a fetch
//!   that reaches the leader's log end, or that reaches where the leader's log ended at its
//!   previous fetch (it is keeping pace, with one fetch of delay).
//! - The high watermark is the smallest log end offset over the *maximal* ISR: the committed
//!   ISR plus any member a pending change adds. A pending shrink does not lower the bar until
//!   the controller commits it, so the HW never counts on a replica the ISR no longer has.
//! - An ISR member not caught up for `replica.lag.time.max.ms` is dropped; a replica outside
//!   the ISR whose log end reaches the HW and the start of the leader's epoch joins. One
//!   change is in flight at a time; it takes effect when the metadata image shows it.

use std::collections::BTreeMap;

/// What the leader knows about one follower.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Follower {
    /// The follower's log end offset as of its last fetch; -1 until it fetches.
    pub log_end_offset: i64,
    /// When it was last caught up (ms); members of the ISR start "caught up" at election.
    pub last_caught_up_ms: i64,
    /// When it last fetched, and the leader's log end at that moment.
    pub last_fetch_ms: i64,
    pub last_fetch_leader_end: i64,
}

/// The leader's replica state for one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderState {
    pub node_id: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub replicas: Vec<i32>,
    /// The ISR as committed in the metadata.
    pub isr: Vec<i32>,
    /// An ISR change sent to the controller and not yet seen committed.
    pub pending_isr: Option<Vec<i32>>,
    /// The leader's log end offset when it became leader in this epoch.
    pub epoch_start_offset: i64,
    followers: BTreeMap<i32, Follower>,
}

impl LeaderState {
    /// A broker becoming leader at `leader_epoch` with log end `log_end` at time `now_ms`.
    pub fn new(
        node_id: i32,
        leader_epoch: i32,
        partition_epoch: i32,
        replicas: &[i32],
        isr: &[i32],
        log_end: i64,
        now_ms: i64,
    ) -> Self {
        let followers = replicas
            .iter()
            .filter(|r| **r != node_id)
            .map(|r| {
                (
                    *r,
                    Follower {
                        log_end_offset: -1,
                        last_caught_up_ms: if isr.contains(r) { now_ms } else { 0 },
                        last_fetch_ms: 0,
                        last_fetch_leader_end: -1,
                    },
                )
            })
            .collect();
        Self {
            node_id,
            leader_epoch,
            partition_epoch,
            replicas: replicas.to_vec(),
            isr: isr.to_vec(),
            pending_isr: None,
            epoch_start_offset: log_end,
            followers,
        }
    }

    /// The metadata image shows the partition at `partition_epoch` (same leader and epoch):
    /// a committed ISR change. A pending change is settled by any newer partition epoch.
    pub fn update_metadata(
        &mut self,
        partition_epoch: i32,
        replicas: &[i32],
        isr: &[i32],
        now_ms: i64,
    ) {
        if partition_epoch <= self.partition_epoch && self.isr == isr {
            return;
        }
        for r in replicas.iter().filter(|r| **r != self.node_id) {
            self.followers.entry(*r).or_insert(Follower {
                log_end_offset: -1,
                last_caught_up_ms: now_ms,
                last_fetch_ms: 0,
                last_fetch_leader_end: -1,
            });
        }
        self.followers.retain(|r, _| replicas.contains(r));
        self.partition_epoch = partition_epoch;
        self.replicas = replicas.to_vec();
        self.isr = isr.to_vec();
        self.pending_isr = None;
    }

    /// The controller refused the pending change (or it could not be sent): forget it, so
    /// the next check decides again from the committed ISR.
    pub fn change_failed(&mut self) {
        self.pending_isr = None;
    }

    pub fn is_replica(&self, broker: i32) -> bool {
        self.followers.contains_key(&broker)
    }

    pub fn follower(&self, broker: i32) -> Option<&Follower> {
        self.followers.get(&broker)
    }

    /// Records a fetch by `broker` from `fetch_offset` when the leader's log ends at
    /// `leader_end`. Returns false for a broker that is not a follower of this partition.
    pub fn follower_fetched(
        &mut self,
        broker: i32,
        fetch_offset: i64,
        leader_end: i64,
        now_ms: i64,
    ) -> bool {
        let Some(f) = self.followers.get_mut(&broker) else {
            return false;
        };
        if fetch_offset > leader_end {
            // Past this log's end: the follower holds records this leader does not (it has
            // not truncated yet). Its fetch is answered OFFSET_OUT_OF_RANGE and proves nothing.
            return true;
        }
        if fetch_offset >= leader_end {
            f.last_caught_up_ms = now_ms;
        } else if fetch_offset >= f.last_fetch_leader_end && f.last_fetch_leader_end >= 0 {
            f.last_caught_up_ms = f.last_caught_up_ms.max(f.last_fetch_ms);
        }
        f.log_end_offset = fetch_offset;
        f.last_fetch_ms = now_ms;
        f.last_fetch_leader_end = leader_end;
        true
    }

    /// The committed ISR plus members a pending change adds.
    pub fn maximal_isr(&self) -> Vec<i32> {
        let mut out = self.isr.clone();
        if let Some(p) = &self.pending_isr {
            for b in p {
                if !out.contains(b) {
                    out.push(*b);
                }
            }
        }
        out
    }

    /// The high watermark the ISR supports when the leader's log ends at `leader_end`: the
    /// smallest log end offset in the maximal ISR (-1 while a member has not fetched yet).
    /// Callers keep the larger of this and the current HW: it never moves back.
    pub fn high_watermark(&self, leader_end: i64) -> i64 {
        self.maximal_isr()
            .iter()
            .map(|b| {
                if *b == self.node_id {
                    leader_end
                } else {
                    self.followers.get(b).map_or(-1, |f| f.log_end_offset)
                }
            })
            .min()
            .unwrap_or(leader_end)
    }

    /// The ISR change due at `now_ms`, if any (and no other is pending): members lagging
    /// longer than `max_lag_ms` leave, caught-up replicas join.
    /// A replica `eligible` refuses (a fenced broker, KIP-841) is never proposed to join:
    /// its last fetch may be recent, but the controller would refuse it.
    pub fn isr_change(
        &self,
        hw: i64,
        now_ms: i64,
        max_lag_ms: i64,
        eligible: impl Fn(i32) -> bool,
    ) -> Option<Vec<i32>> {
        if self.pending_isr.is_some() {
            return None;
        }
        let keep = |b: &i32| {
            *b == self.node_id
                || self
                    .followers
                    .get(b)
                    .is_some_and(|f| now_ms - f.last_caught_up_ms <= max_lag_ms)
        };
        let join = |b: &i32| {
            !self.isr.contains(b)
                && eligible(*b)
                && self.followers.get(b).is_some_and(|f| {
                    f.log_end_offset >= hw
                        && f.log_end_offset >= self.epoch_start_offset
                        && now_ms - f.last_caught_up_ms <= max_lag_ms
                })
        };
        let next: Vec<i32> = self
            .replicas
            .iter()
            .copied()
            .filter(|b| (self.isr.contains(b) && keep(b)) || join(b))
            .collect();
        let mut current = self.isr.clone();
        current.sort_unstable();
        let mut sorted = next.clone();
        sorted.sort_unstable();
        (sorted != current).then_some(next)
    }

    /// Marks `isr` as sent to the controller.
    pub fn proposed(&mut self, isr: Vec<i32>) {
        self.pending_isr = Some(isr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAG: i64 = 10_000;

    /// Leader 1 of replicas [1, 2, 3], all in sync, log end 100 at t=0.
    fn leader() -> LeaderState {
        LeaderState::new(1, 5, 7, &[1, 2, 3], &[1, 2, 3], 100, 0)
    }

    #[test]
    fn hw_is_the_smallest_isr_log_end_and_waits_for_every_member() {
        let mut s = leader();
        assert_eq!(s.high_watermark(100), -1, "followers have not fetched yet");
        s.follower_fetched(2, 100, 100, 10);
        assert_eq!(s.high_watermark(100), -1);
        s.follower_fetched(3, 90, 100, 10);
        assert_eq!(s.high_watermark(100), 90);
        // The leader appends; followers catch up one after the other.
        s.follower_fetched(2, 120, 120, 20);
        assert_eq!(s.high_watermark(120), 90);
        s.follower_fetched(3, 120, 120, 20);
        assert_eq!(s.high_watermark(120), 120);
        // A fetch offset beyond the leader's end (a diverged follower) changes nothing.
        s.follower_fetched(3, 500, 130, 30);
        assert_eq!(s.follower(3).expect("f").log_end_offset, 120);
        assert_eq!(s.follower(3).expect("f").last_caught_up_ms, 20);
        // Strangers are not followers.
        assert!(!s.follower_fetched(9, 120, 120, 30));
    }

    #[test]
    fn a_single_replica_isr_is_its_own_high_watermark() {
        let s = LeaderState::new(1, 0, 0, &[1], &[1], 0, 0);
        assert_eq!(s.high_watermark(42), 42);
        assert_eq!(s.isr_change(42, 1_000_000, LAG, |_| true), None);
    }

    #[test]
    fn a_lagging_member_is_dropped_and_the_hw_waits_for_the_commit() {
        let mut s = leader();
        s.follower_fetched(2, 100, 100, 1_000);
        s.follower_fetched(3, 100, 100, 1_000);
        // Broker 3 stops fetching; 2 keeps up as the leader appends.
        for t in (2_000..=12_000).step_by(1_000) {
            let end = 100 + t / 100;
            s.follower_fetched(2, end, end, t);
        }
        assert_eq!(
            s.isr_change(100, 11_000, LAG, |_| true),
            None,
            "within the lag limit"
        );
        let change = s.isr_change(100, 11_001, LAG, |_| true).expect("shrink");
        assert_eq!(change, vec![1, 2]);
        s.proposed(change.clone());
        assert_eq!(
            s.isr_change(100, 11_002, LAG, |_| true),
            None,
            "one change at a time"
        );
        // Until the controller commits, 3 still holds the HW back.
        assert_eq!(s.high_watermark(220), 100);
        s.update_metadata(8, &[1, 2, 3], &change, 11_500);
        assert_eq!(s.pending_isr, None);
        assert_eq!(s.high_watermark(220), 220);
    }

    #[test]
    fn a_follower_keeping_pace_one_fetch_behind_stays_in_sync() {
        let mut s = leader();
        // Each fetch reaches where the leader ended at the previous fetch, never the end.
        let mut end = 100;
        for t in (1..=30).map(|i| i * 1_000) {
            let prev = end;
            end += 10;
            s.follower_fetched(2, prev, end, t);
            s.follower_fetched(3, end, end, t);
        }
        assert_eq!(s.isr_change(end, 30_500, LAG, |_| true), None);
    }

    #[test]
    fn a_caught_up_replica_rejoins_and_counts_as_soon_as_proposed() {
        let mut s = LeaderState::new(1, 5, 7, &[1, 2, 3], &[1, 2], 100, 0);
        s.follower_fetched(2, 150, 150, 100);
        assert_eq!(s.high_watermark(150), 150, "3 is outside the ISR");
        s.follower_fetched(3, 120, 150, 100);
        assert_eq!(
            s.isr_change(150, 200, LAG, |_| true),
            None,
            "3 is below the HW"
        );
        s.follower_fetched(3, 150, 150, 300);
        assert_eq!(
            s.isr_change(150, 300, LAG, |b| b != 3),
            None,
            "a fenced broker is not proposed, however recent its last fetch"
        );
        let change = s.isr_change(150, 300, LAG, |_| true).expect("expand");
        assert_eq!(change, vec![1, 2, 3]);
        s.proposed(change);
        assert_eq!(s.maximal_isr(), vec![1, 2, 3]);
        // The leader appends: the HW now waits for 3 as well.
        s.follower_fetched(2, 160, 160, 400);
        assert_eq!(s.high_watermark(160), 150);
        // A refused change is forgotten and decided again.
        s.change_failed();
        assert_eq!(s.high_watermark(160), 160);
    }

    #[test]
    fn a_replica_must_reach_the_start_of_the_leader_epoch_to_join() {
        // New leader at log end 200 with a stale HW of 150.
        let mut s = LeaderState::new(1, 6, 9, &[1, 2, 3], &[1, 2], 200, 0);
        s.follower_fetched(3, 180, 200, 10);
        assert_eq!(
            s.isr_change(150, 20, LAG, |_| true),
            None,
            "below the epoch start"
        );
        s.follower_fetched(3, 200, 200, 30);
        assert_eq!(s.isr_change(150, 40, LAG, |_| true), Some(vec![1, 2, 3]));
    }

    #[test]
    fn committed_metadata_settles_changes_and_tracks_replicas() {
        let mut s = leader();
        s.proposed(vec![1, 2]);
        // An image at the same partition epoch and ISR settles nothing.
        s.update_metadata(7, &[1, 2, 3], &[1, 2, 3], 0);
        assert_eq!(s.pending_isr, Some(vec![1, 2]));
        s.update_metadata(8, &[1, 2, 3], &[1, 2], 0);
        assert_eq!((s.isr.clone(), s.pending_isr.clone()), (vec![1, 2], None));
    }
}
