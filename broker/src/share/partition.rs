//! One share-partition (KIP-932): what a share group has done with one topic partition's
//! records. Records from the start offset (SPSO) up to the end offset (SPEO) are in flight:
//! available, acquired by a member until its lock runs out, acknowledged, or archived.
//!
//! ```text
//!  Available --acquire (delivery count + 1)--> Acquired --accept--> Acknowledged
//!      ^                                          | release, lock timeout
//!      +------------------------------------------+  (Archived at the delivery limit)
//!                                                 +--reject--> Archived
//! ```
//!
//! The start moves past every record that is acknowledged or archived; records below it are
//! done and never delivered again.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use uuid::Uuid;

/// The share-partition settings (`group.share.*`).
#[derive(Debug, Clone, Copy)]
pub struct ShareConfig {
    /// `group.share.record.lock.duration.ms`.
    pub lock_duration: Duration,
    /// `group.share.delivery.count.limit`.
    pub delivery_count_limit: i16,
    /// `group.share.partition.max.record.locks`: records in flight per share-partition.
    pub max_in_flight: i64,
    /// `group.share.session.timeout.ms`.
    pub session_timeout: Duration,
    /// `group.share.heartbeat.interval.ms`.
    pub heartbeat_interval: Duration,
    /// Where a new share-partition starts (Kafka's `share.auto.offset.reset`): the log
    /// end, its start, or the first record at or after a time back from now.
    pub auto_offset_reset: metadata_quorum::configs::ShareAutoOffsetReset,
    /// Kafka's `share.isolation.level=read_committed` (a group config only): records are
    /// read up to the last stable offset, and those of aborted transactions are archived.
    pub read_committed: bool,
}

impl Default for ShareConfig {
    fn default() -> Self {
        Self {
            lock_duration: Duration::from_secs(30),
            delivery_count_limit: 5,
            max_in_flight: 2000,
            session_timeout: Duration::from_secs(45),
            heartbeat_interval: Duration::from_secs(5),
            auto_offset_reset: metadata_quorum::configs::ShareAutoOffsetReset::Latest,
            read_committed: false,
        }
    }
}

/// Acknowledgement types of ShareFetch and ShareAcknowledge.
pub const GAP: i8 = 0;
pub const ACCEPT: i8 = 1;
pub const RELEASE: i8 = 2;
pub const REJECT: i8 = 3;

pub const INVALID_REQUEST: i16 = 42;
pub const INVALID_RECORD_STATE: i16 = 121;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordState {
    Available,
    Acquired,
    Acknowledged,
    Archived,
}

#[derive(Debug, Clone)]
struct InFlight {
    state: RecordState,
    delivery_count: i16,
    owner: Option<String>,
    lock_until: Option<Instant>,
}

/// A range of records acquired together, with their delivery count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Acquired {
    pub first: i64,
    pub last: i64,
    pub delivery_count: i16,
}

/// A batch as read from the log: (base offset, last offset, done at once: a control batch,
/// or under read_committed a batch of an aborted transaction; no member gets it).
pub type BatchSpan = (i64, i64, bool);

/// Consecutive records of the in-flight window in one state with one delivery count (the
/// state batches of Kafka's share snapshots).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateBatch {
    pub first: i64,
    pub last: i64,
    /// Available, Acknowledged or Archived: an acquired record is saved as available (its
    /// lock does not outlive the leader), its delivery counted.
    pub state: RecordState,
    pub delivery_count: i16,
}

/// What a share-partition makes durable: the window [start, end) and the state of every
/// record in it. Offsets of the window with no batch are done (control records, offsets the
/// log skipped, records acknowledged or archived).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub start: i64,
    pub end: i64,
    pub batches: Vec<StateBatch>,
}

/// How a snapshot is written in the metadata of the start's commit (the start is the
/// committed offset itself). A commit without it, from a start-only version, is a window
/// that is empty at the start.
const SNAPSHOT_TAG: &str = "share-state/1";

impl Snapshot {
    /// A window that starts, and is empty, at `start`.
    pub fn at(start: i64) -> Self {
        Self {
            start,
            end: start,
            batches: Vec::new(),
        }
    }

    /// `share-state/1 <topic id> <end> [<first>-<last>:<a|k|x><delivery count>]...` (the
    /// topic id tells the state of a deleted topic from that of one made again by its name).
    pub fn to_metadata(&self, topic: Uuid) -> String {
        let mut out = format!("{SNAPSHOT_TAG} {topic} {}", self.end);
        for b in &self.batches {
            let state = match b.state {
                RecordState::Acknowledged => 'k',
                RecordState::Archived => 'x',
                RecordState::Available | RecordState::Acquired => 'a',
            };
            out.push_str(&format!(
                " {}-{}:{state}{}",
                b.first, b.last, b.delivery_count
            ));
        }
        out
    }

    /// The snapshot committed at `start` with `metadata`; one that does not parse, is not
    /// ordered inside its window, or whose window is wider than `max_window` records (no
    /// leader writes one: the window holds `group.share.partition.max.record.locks` records
    /// and the batch that crossed that), is the empty window at `start`: records are
    /// delivered again from there, none is skipped, and restoring it costs nothing. None if
    /// it is the state of another topic of the same name (deleted since): no state.
    pub fn from_commit(
        start: i64,
        metadata: Option<&str>,
        max_window: i64,
        topic: Uuid,
    ) -> Option<Self> {
        if metadata
            .and_then(snapshot_topic)
            .is_some_and(|other| other != topic)
        {
            return None;
        }
        Some(
            metadata
                .and_then(|m| Self::parse(start, m, max_window))
                .unwrap_or_else(|| Self::at(start)),
        )
    }

    fn parse(start: i64, metadata: &str, max_window: i64) -> Option<Self> {
        let mut words = metadata.split(' ');
        if words.next()? != SNAPSHOT_TAG {
            return None;
        }
        words.next()?.parse::<Uuid>().ok()?;
        let end: i64 = words.next()?.parse().ok()?;
        if end < start || end - start > max_window {
            return None;
        }
        let mut batches = Vec::new();
        let mut next = start;
        for w in words {
            let (range, st) = w.split_once(':')?;
            let (first, last) = range.split_once('-')?;
            let (first, last): (i64, i64) = (first.parse().ok()?, last.parse().ok()?);
            let mut chars = st.chars();
            let state = match chars.next()? {
                'a' => RecordState::Available,
                'k' => RecordState::Acknowledged,
                'x' => RecordState::Archived,
                _ => return None,
            };
            let delivery_count: i16 = chars.as_str().parse().ok()?;
            if first < next || last < first || last >= end || delivery_count < 0 {
                return None;
            }
            next = last + 1;
            batches.push(StateBatch {
                first,
                last,
                state,
                delivery_count,
            });
        }
        Some(Self {
            start,
            end,
            batches,
        })
    }
}

/// The topic id a snapshot's metadata names, if it is one.
pub fn snapshot_topic(metadata: &str) -> Option<Uuid> {
    let mut words = metadata.split(' ');
    (words.next()? == SNAPSHOT_TAG)
        .then(|| words.next()?.parse().ok())
        .flatten()
}

#[derive(Debug, Clone)]
pub struct SharePartition {
    start: i64,
    end: i64,
    records: BTreeMap<i64, InFlight>,
    /// The snapshot last made durable (None: never).
    persisted: Option<Snapshot>,
    /// The partition's leader epoch when this leader set it up (-1: unknown).
    leader_epoch: i32,
}

impl SharePartition {
    /// An empty window at `start` (tests; a broker only restores durable ones).
    #[cfg(test)]
    pub fn new(start: i64) -> Self {
        Self {
            start,
            end: start,
            records: BTreeMap::new(),
            persisted: None,
            leader_epoch: -1,
        }
    }

    /// The partition's leader epoch when this leader set it up.
    pub fn leader_epoch(&self) -> i32 {
        self.leader_epoch
    }

    /// The share-partition a durable `snapshot` describes, on a log that now holds
    /// [`log_start`, `log_end`), set up at `leader_epoch`: acquired records come back
    /// available with their delivery counted (a count at the limit archives them), and what
    /// retention removed is gone.
    /// It is not durable yet: the new leader writes it at its own leader epoch before it
    /// serves from it, which fences the writes of the leader before it.
    pub fn restore(
        snapshot: &Snapshot,
        (log_start, log_end): (i64, i64),
        leader_epoch: i32,
        config: &ShareConfig,
    ) -> Self {
        let start = snapshot.start.clamp(log_start, log_end.max(log_start));
        let end = snapshot.end.clamp(start, log_end.max(start));
        let mut records = BTreeMap::new();
        for b in &snapshot.batches {
            let state = match b.state {
                RecordState::Available | RecordState::Acquired
                    if b.delivery_count >= config.delivery_count_limit =>
                {
                    RecordState::Archived
                }
                RecordState::Acquired => RecordState::Available,
                s => s,
            };
            for offset in b.first.max(start)..=b.last.min(end - 1) {
                records.insert(
                    offset,
                    InFlight {
                        state,
                        delivery_count: b.delivery_count,
                        owner: None,
                        lock_until: None,
                    },
                );
            }
        }
        let mut sp = Self {
            start,
            end,
            records,
            persisted: None,
            leader_epoch,
        };
        sp.advance();
        sp
    }

    /// The window and its records' states, as made durable.
    pub fn snapshot(&self) -> Snapshot {
        let mut batches: Vec<StateBatch> = Vec::new();
        for (&offset, r) in self.records.range(self.start..self.end) {
            let state = match r.state {
                RecordState::Acquired => RecordState::Available,
                s => s,
            };
            match batches.last_mut() {
                Some(b)
                    if b.last + 1 == offset
                        && b.state == state
                        && b.delivery_count == r.delivery_count =>
                {
                    b.last = offset
                }
                _ => batches.push(StateBatch {
                    first: offset,
                    last: offset,
                    state,
                    delivery_count: r.delivery_count,
                }),
            }
        }
        Snapshot {
            start: self.start,
            end: self.end,
            batches,
        }
    }

    /// The snapshot to make durable, if it changed since the last one that was.
    pub fn to_persist(&self) -> Option<Snapshot> {
        let now = self.snapshot();
        (self.persisted.as_ref() != Some(&now)).then_some(now)
    }

    pub fn set_persisted(&mut self, snapshot: Snapshot) {
        self.persisted = Some(snapshot);
    }

    /// Whether some snapshot of it has been made durable since it was set up here.
    pub fn is_durable(&self) -> bool {
        self.persisted.is_some()
    }

    /// The share-partition start offset (every record below it is done).
    pub fn start(&self) -> i64 {
        self.start
    }

    /// The next offset to read from the log.
    pub fn end(&self) -> i64 {
        self.end
    }

    pub fn state_of(&self, offset: i64) -> Option<(RecordState, i16)> {
        self.records
            .get(&offset)
            .map(|r| (r.state, r.delivery_count))
    }

    /// The log no longer has what the share-partition would read next (retention): start
    /// again at `log_start`.
    pub fn skip_to(&mut self, log_start: i64) {
        if self.end < log_start {
            self.records.clear();
            self.start = log_start;
            self.end = log_start;
        }
    }

    /// Whether more records may be taken from the log (the in-flight window has room).
    pub fn has_room(&self, config: &ShareConfig) -> bool {
        self.end - self.start < config.max_in_flight
    }

    fn release(r: &mut InFlight, config: &ShareConfig) {
        r.owner = None;
        r.lock_until = None;
        r.state = if r.delivery_count >= config.delivery_count_limit {
            RecordState::Archived
        } else {
            RecordState::Available
        };
    }

    /// Releases records whose acquisition lock ran out.
    pub fn expire_locks(&mut self, now: Instant, config: &ShareConfig) -> usize {
        let mut n = 0;
        for r in self.records.values_mut() {
            if r.state == RecordState::Acquired && r.lock_until.is_some_and(|t| now >= t) {
                Self::release(r, config);
                n += 1;
            }
        }
        self.advance();
        n
    }

    /// Acquires for `member` up to `max` records: first those available again (released or
    /// timed out), then new ones from `batches`, read from the log at [`Self::end`].
    pub fn acquire(
        &mut self,
        member: &str,
        max: usize,
        batches: &[BatchSpan],
        now: Instant,
        config: &ShareConfig,
    ) -> Vec<Acquired> {
        let lock_until = now + config.lock_duration;
        let mut taken: Vec<(i64, i16)> = Vec::new();
        let mut archived = false;
        for (offset, r) in self.records.iter_mut() {
            if taken.len() >= max {
                break;
            }
            if r.state != RecordState::Available {
                continue;
            }
            if r.delivery_count >= config.delivery_count_limit {
                // Released under a higher limit (the group's `share.delivery.count.limit`
                // was lowered since): at the limit now, so archived, not left in the way.
                r.state = RecordState::Archived;
                archived = true;
                continue;
            }
            r.state = RecordState::Acquired;
            r.delivery_count += 1;
            r.owner = Some(member.to_string());
            r.lock_until = Some(lock_until);
            taken.push((*offset, r.delivery_count));
        }
        if archived {
            self.advance();
        }
        // New records, batch by batch while the window has room. A batch larger than what is
        // left of `max` is taken whole into flight, its records past `max` available to the
        // next fetch.
        for &(base, last, control) in batches {
            if taken.len() >= max || !self.has_room(config) {
                break;
            }
            if last < self.end {
                continue;
            }
            // Offsets the log skipped (compaction) and control batches get no entry: they are
            // never delivered, and the start moves over them.
            for offset in base.max(self.end)..=last {
                if control {
                    continue;
                }
                if taken.len() < max {
                    self.records.insert(
                        offset,
                        InFlight {
                            state: RecordState::Acquired,
                            delivery_count: 1,
                            owner: Some(member.to_string()),
                            lock_until: Some(lock_until),
                        },
                    );
                    taken.push((offset, 1));
                } else {
                    self.records.insert(
                        offset,
                        InFlight {
                            state: RecordState::Available,
                            delivery_count: 0,
                            owner: None,
                            lock_until: None,
                        },
                    );
                }
            }
            self.end = last + 1;
        }
        self.advance();
        taken.sort_unstable();
        ranges(&taken)
    }

    /// Applies `member`'s acknowledgement of [first, last]: one type for the whole range or
    /// one per offset. Nothing changes unless every record may be acknowledged so.
    pub fn acknowledge(
        &mut self,
        member: &str,
        first: i64,
        last: i64,
        types: &[i8],
        config: &ShareConfig,
    ) -> Result<(), i16> {
        // Offsets never handed out cannot be acknowledged; the range is bounded by what the
        // log gave (no client-sized loops or allocations).
        if first < 0 || last < first || last >= self.end || types.is_empty() {
            return Err(if last >= self.end && first >= 0 && last >= first {
                INVALID_RECORD_STATE
            } else {
                INVALID_REQUEST
            });
        }
        let span = last - first + 1;
        if types.len() != 1 && types.len() as i64 != span {
            return Err(INVALID_REQUEST);
        }
        if types.iter().any(|t| !(GAP..=REJECT).contains(t)) {
            return Err(INVALID_REQUEST);
        }
        let type_of = |offset: i64| {
            if types.len() == 1 {
                types[0]
            } else {
                types[(offset - first) as usize]
            }
        };
        // Below the start everything is done: only gaps may be named there.
        let from = first.max(self.start);
        let below = (from.min(last + 1) - first) as usize;
        let gaps_below = if types.len() == 1 {
            below == 0 || types[0] == GAP
        } else {
            types[..below].iter().all(|t| *t == GAP)
        };
        if !gaps_below {
            return Err(INVALID_RECORD_STATE);
        }
        for offset in from..=last {
            let t = type_of(offset);
            match self.records.get(&offset) {
                Some(r)
                    if r.state == RecordState::Acquired && r.owner.as_deref() == Some(member) => {}
                // A gap the client saw (no record at that offset) that is already done.
                Some(r) if t == GAP && r.state == RecordState::Archived => {}
                None if t == GAP => {}
                _ => return Err(INVALID_RECORD_STATE),
            }
        }
        for offset in from..=last {
            let t = type_of(offset);
            if let Some(r) = self.records.get_mut(&offset) {
                match t {
                    ACCEPT => {
                        r.state = RecordState::Acknowledged;
                        r.owner = None;
                        r.lock_until = None;
                    }
                    RELEASE => Self::release(r, config),
                    _ => {
                        r.state = RecordState::Archived;
                        r.owner = None;
                        r.lock_until = None;
                    }
                }
            }
        }
        self.advance();
        Ok(())
    }

    /// Undoes the acquisition of [first, last] by `member` (the records could not be sent):
    /// available again, their delivery not counted.
    pub fn give_back(&mut self, member: &str, first: i64, last: i64) {
        for (_, r) in self.records.range_mut(first..=last) {
            if r.state == RecordState::Acquired && r.owner.as_deref() == Some(member) {
                r.state = RecordState::Available;
                r.owner = None;
                r.lock_until = None;
                r.delivery_count = (r.delivery_count - 1).max(0);
            }
        }
    }

    /// Gives back every record `member` holds (its share session closed).
    pub fn release_member(&mut self, member: &str, config: &ShareConfig) {
        for r in self.records.values_mut() {
            if r.state == RecordState::Acquired && r.owner.as_deref() == Some(member) {
                Self::release(r, config);
            }
        }
        self.advance();
    }

    /// Moves the start past the records that are done.
    fn advance(&mut self) {
        while self.start < self.end {
            match self.records.first_key_value() {
                // Offsets with no entry (compaction gaps, control records) are done.
                Some((&offset, _)) if offset > self.start => self.start = offset,
                Some((&offset, r))
                    if matches!(r.state, RecordState::Acknowledged | RecordState::Archived) =>
                {
                    self.records.remove(&offset);
                    self.start = offset + 1;
                }
                Some(_) => break,
                None => self.start = self.end,
            }
        }
    }
}

/// Consecutive offsets with the same delivery count, as AcquiredRecords ranges.
fn ranges(taken: &[(i64, i16)]) -> Vec<Acquired> {
    let mut out: Vec<Acquired> = Vec::new();
    for &(offset, dc) in taken {
        match out.last_mut() {
            Some(a) if a.last + 1 == offset && a.delivery_count == dc => a.last = offset,
            _ => out.push(Acquired {
                first: offset,
                last: offset,
                delivery_count: dc,
            }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ShareConfig {
        ShareConfig {
            lock_duration: Duration::from_secs(10),
            delivery_count_limit: 3,
            max_in_flight: 100,
            ..Default::default()
        }
    }

    #[test]
    fn records_go_to_one_member_at_a_time_and_accepted_ones_are_done() {
        let c = config();
        let now = Instant::now();
        let mut sp = SharePartition::new(0);
        let a = sp.acquire("a", 3, &[(0, 2, false), (3, 5, false)], now, &c);
        // Whole batches: the second is not started once three records are taken.
        assert_eq!(
            a,
            vec![Acquired {
                first: 0,
                last: 2,
                delivery_count: 1
            }]
        );
        let b = sp.acquire("b", 10, &[(3, 5, false)], now, &c);
        assert_eq!((b[0].first, b[0].last), (3, 5));
        // a cannot acknowledge b's records.
        assert_eq!(
            sp.acknowledge("a", 3, 3, &[ACCEPT], &c),
            Err(INVALID_RECORD_STATE)
        );
        sp.acknowledge("a", 0, 2, &[ACCEPT], &c).expect("ack");
        assert_eq!(sp.start(), 3);
        sp.acknowledge("b", 3, 5, &[ACCEPT, REJECT, ACCEPT], &c)
            .expect("ack");
        assert_eq!(sp.start(), 6);
        // Done records are never delivered again.
        assert!(sp.acquire("a", 10, &[], now, &c).is_empty());
    }

    #[test]
    fn a_lowered_delivery_limit_archives_released_records_at_it() {
        let five = ShareConfig {
            delivery_count_limit: 5,
            ..config()
        };
        let two = ShareConfig {
            delivery_count_limit: 2,
            ..config()
        };
        let now = Instant::now();
        let mut sp = SharePartition::new(0);
        for _ in 0..2 {
            sp.acquire("a", 10, &[(0, 1, false)], now, &five);
            sp.acknowledge("a", 0, 1, &[RELEASE], &five)
                .expect("release");
        }
        // Delivered twice and available; the group's limit drops to 2: they are archived,
        // and the start moves past them, instead of the window stopping there.
        assert!(sp.acquire("a", 10, &[], now, &two).is_empty());
        assert_eq!(sp.start(), 2);
        let new = sp.acquire("a", 10, &[(2, 2, false)], now, &two);
        assert_eq!((new[0].first, new[0].delivery_count), (2, 1));
    }

    #[test]
    fn released_and_timed_out_records_come_back_until_the_delivery_limit() {
        let c = config();
        let t0 = Instant::now();
        let mut sp = SharePartition::new(10);
        sp.acquire("a", 10, &[(10, 11, false)], t0, &c);
        sp.acknowledge("a", 10, 10, &[RELEASE], &c)
            .expect("release");
        // 10 is available again (delivery 2); 11 is still a's until its lock runs out.
        let again = sp.acquire("b", 10, &[], t0, &c);
        assert_eq!(
            again,
            vec![Acquired {
                first: 10,
                last: 10,
                delivery_count: 2
            }]
        );
        assert_eq!(sp.expire_locks(t0 + Duration::from_secs(11), &c), 2);
        let third = sp.acquire("c", 10, &[], t0 + Duration::from_secs(11), &c);
        assert_eq!(
            third.iter().map(|a| a.delivery_count).collect::<Vec<_>>(),
            [3, 2]
        );
        // At the limit (3), a release archives the record instead.
        sp.acknowledge("c", 10, 10, &[RELEASE], &c)
            .expect("release");
        assert_eq!(sp.state_of(10), None, "archived and below the start");
        assert_eq!(sp.start(), 11);
        // A rejected record is not delivered again either.
        sp.acknowledge("c", 11, 11, &[REJECT], &c).expect("reject");
        assert_eq!(sp.start(), 12);
        assert!(sp
            .acquire("a", 10, &[], t0 + Duration::from_secs(30), &c)
            .is_empty());
    }

    #[test]
    fn control_batches_and_compacted_gaps_are_skipped_and_bad_acks_change_nothing() {
        let c = config();
        let now = Instant::now();
        let mut sp = SharePartition::new(0);
        let got = sp.acquire(
            "a",
            10,
            &[(0, 1, false), (2, 2, true), (5, 6, false)],
            now,
            &c,
        );
        assert_eq!(
            got.iter().map(|a| (a.first, a.last)).collect::<Vec<_>>(),
            [(0, 1), (5, 6)]
        );
        assert_eq!(sp.end(), 7);
        // Type lists of the wrong length, unknown types and offsets not held are refused
        // whole: nothing was applied.
        assert_eq!(
            sp.acknowledge("a", 0, 1, &[ACCEPT, ACCEPT, ACCEPT], &c),
            Err(INVALID_REQUEST)
        );
        assert_eq!(sp.acknowledge("a", 0, 1, &[9], &c), Err(INVALID_REQUEST));
        assert_eq!(
            sp.acknowledge("a", 0, 5, &[ACCEPT], &c),
            Err(INVALID_RECORD_STATE)
        );
        assert_eq!(sp.state_of(0).map(|s| s.0), Some(RecordState::Acquired));
        sp.acknowledge("a", 0, 1, &[ACCEPT], &c).expect("ack");
        sp.acknowledge("a", 3, 4, &[GAP], &c).expect("gap");
        sp.acknowledge("a", 5, 6, &[ACCEPT], &c).expect("ack");
        assert_eq!(sp.start(), 7);
        // Ranges a client makes up: negative, reversed, past what was handed out, or huge
        // below the start, are refused at once (no loop over them).
        assert_eq!(sp.acknowledge("a", -5, 1, &[GAP], &c), Err(INVALID_REQUEST));
        assert_eq!(sp.acknowledge("a", 3, 2, &[GAP], &c), Err(INVALID_REQUEST));
        assert_eq!(
            sp.acknowledge("a", 0, i64::MAX, &[GAP], &c),
            Err(INVALID_RECORD_STATE)
        );
        assert_eq!(
            sp.acknowledge("a", 7, 7, &[ACCEPT], &c),
            Err(INVALID_RECORD_STATE)
        );
        // Gaps named below the start are fine; anything else there is not.
        sp.acknowledge("a", 0, 6, &[GAP], &c)
            .expect("gaps below the start");
        sp.acknowledge("a", 0, 3, &[GAP, GAP, GAP, GAP], &c)
            .expect("per-offset gaps wholly below the start");
        assert_eq!(
            sp.acknowledge("a", 0, 0, &[ACCEPT], &c),
            Err(INVALID_RECORD_STATE)
        );
    }

    #[test]
    fn the_in_flight_window_is_bounded_and_a_closed_session_gives_records_back() {
        let c = ShareConfig {
            max_in_flight: 4,
            ..config()
        };
        let now = Instant::now();
        let mut sp = SharePartition::new(0);
        let got = sp.acquire(
            "a",
            100,
            &[(0, 2, false), (3, 5, false), (6, 8, false)],
            now,
            &c,
        );
        // The second batch started inside the window; the third did not.
        assert_eq!(got.last().map(|a| a.last), Some(5));
        assert!(!sp.has_room(&c));
        // A batch larger than the fetch's share: the rest is available to the next fetch.
        let mut big = SharePartition::new(0);
        let first = big.acquire("a", 2, &[(0, 4, false)], now, &c);
        assert_eq!((first[0].first, first[0].last), (0, 1));
        let rest = big.acquire("b", 10, &[], now, &c);
        assert_eq!(
            (rest[0].first, rest[0].last, rest[0].delivery_count),
            (2, 4, 1)
        );
        sp.release_member("a", &c);
        let back = sp.acquire("b", 100, &[], now, &c);
        assert_eq!(
            (back[0].first, back[0].last, back[0].delivery_count),
            (0, 5, 2)
        );
        // Records that could not be sent go back with their delivery uncounted.
        let mut sp2 = SharePartition::new(0);
        sp2.acquire("a", 10, &[(0, 3, false)], now, &c);
        sp2.give_back("a", 2, 3);
        let again = sp2.acquire("b", 10, &[], now, &c);
        assert_eq!(
            (again[0].first, again[0].last, again[0].delivery_count),
            (2, 3, 1)
        );
        // Retention passed the share-partition: it starts again at the log start.
        let mut behind = SharePartition::new(0);
        behind.skip_to(50);
        assert_eq!((behind.start(), behind.end()), (50, 50));
    }

    #[test]
    fn a_restored_share_partition_keeps_acknowledgements_and_delivery_counts() {
        let c = config();
        let now = Instant::now();
        let mut sp = SharePartition::new(0);
        sp.acquire("a", 20, &[(0, 9, false), (10, 10, true)], now, &c);
        sp.acknowledge("a", 5, 9, &[ACCEPT], &c).expect("accept");
        sp.acknowledge("a", 1, 3, &[RELEASE, RELEASE, REJECT], &c)
            .expect("release and reject");
        // 0 and 4 are still a's; 11.. are new.
        let snap = sp.snapshot();
        assert_eq!((snap.start, snap.end), (0, 11));
        let topic = Uuid::from_u128(7);
        let text = snap.to_metadata(topic);
        assert_eq!(
            text,
            format!("share-state/1 {topic} 11 0-2:a1 3-3:x1 4-4:a1 5-9:k1")
        );
        let read = Snapshot::from_commit(0, Some(&text), 100, topic).expect("state");
        assert_eq!(read, snap);
        // A window wider than any leader keeps is not trusted (nor restored record by
        // record): the empty window at the start.
        assert_eq!(
            Snapshot::from_commit(0, Some(&text), 10, topic),
            Some(Snapshot::at(0))
        );
        // The state of a deleted topic of the same name is no state for the new one.
        assert_eq!(
            Snapshot::from_commit(0, Some(&text), 100, Uuid::from_u128(8)),
            None
        );
        // A new leader: the records a held and the released ones come back, counted once
        // already; the rejected and accepted ones, and the control record, never do.
        let mut restored = SharePartition::restore(&read, (0, 20), 1, &c);
        assert!(
            !restored.is_durable(),
            "written again by the new leader first"
        );
        restored.set_persisted(restored.snapshot());
        assert_eq!(restored.to_persist(), None);
        let again = restored.acquire("b", 100, &[], now, &c);
        assert_eq!(
            again
                .iter()
                .map(|a| (a.first, a.last, a.delivery_count))
                .collect::<Vec<_>>(),
            [(0, 2, 2), (4, 4, 2)]
        );
        assert_eq!(
            restored.end(),
            11,
            "the log is read on from the window's end"
        );
        restored
            .acknowledge("b", 0, 4, &[ACCEPT, ACCEPT, ACCEPT, GAP, ACCEPT], &c)
            .expect("accept");
        assert_eq!(restored.start(), 11);
        assert!(
            restored.to_persist().is_some(),
            "the change is to be written"
        );
    }

    #[test]
    fn restoring_respects_the_delivery_limit_retention_and_bad_metadata() {
        let c = config(); // delivery limit 3
        let snap = Snapshot {
            start: 5,
            end: 9,
            batches: vec![
                StateBatch {
                    first: 5,
                    last: 6,
                    state: RecordState::Available,
                    delivery_count: 3,
                },
                StateBatch {
                    first: 7,
                    last: 8,
                    state: RecordState::Available,
                    delivery_count: 2,
                },
            ],
        };
        // 5 and 6 were delivered as often as allowed: archived, and the start moves on.
        let mut sp = SharePartition::restore(&snap, (0, 100), 1, &c);
        assert_eq!(sp.start(), 7);
        let got = sp.acquire("a", 10, &[], Instant::now(), &c);
        assert_eq!(
            (got[0].first, got[0].last, got[0].delivery_count),
            (7, 8, 3)
        );
        // Retention took everything below 8.
        let sp = SharePartition::restore(&snap, (8, 100), 1, &c);
        assert_eq!((sp.start(), sp.end()), (8, 9));
        assert_eq!(sp.state_of(8), Some((RecordState::Available, 2)));
        // Retention took the whole window: it starts at the log start.
        let sp = SharePartition::restore(&snap, (50, 100), 1, &c);
        assert_eq!((sp.start(), sp.end()), (50, 50));
        // A commit from a start-only version, or metadata that does not parse or is out of
        // order, is an empty window at the committed start.
        let t = Uuid::from_u128(7);
        for bad in [
            None,
            Some(String::new()),
            Some("share-state/1".to_string()),
            Some(format!("share-state/1 {t}")),
            Some(format!("share-state/1 {t} 3")),
            Some("share-state/1 9".to_string()),
            Some(format!("share-state/1 {t} 9 7-8:a1 5-6:a1")),
            Some(format!("share-state/1 {t} 9 5-9:a1")),
            Some(format!("share-state/1 {t} 9 5-6:q1")),
            Some(format!("share-state/1 {t} 9 5-6:a-1")),
            Some(format!("share-state/2 {t} 9")),
        ] {
            assert_eq!(
                Snapshot::from_commit(5, bad.as_deref(), 100, t),
                Some(Snapshot::at(5)),
                "{bad:?}"
            );
        }
    }
}
