//! The transaction state machine, pure: each operation takes a transactional id's current
//! metadata and returns the metadata to persist (or an error code), as Kafka's
//! `TransactionMetadata` transitions do. The coordinator persists what these return to
//! `__transaction_state` before it answers or acts on it.
//!
//! ```text
//!   Empty --AddPartitions--> Ongoing --EndTxn(commit)--> PrepareCommit --markers--> CompleteCommit
//!     ^                       |    \--EndTxn(abort)/timeout/InitProducerId--> PrepareAbort --markers--> CompleteAbort
//!     +------InitProducerId---+-------------------------------------------------------------+
//! ```

use std::collections::BTreeSet;

use kafka_protocol::ResponseError;
use serde::{Deserialize, Serialize};

/// Kafka's transaction states, with Kafka's names (DescribeTransactions, ListTransactions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnState {
    Empty,
    Ongoing,
    PrepareCommit,
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
}

impl TxnState {
    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
        }
    }

    /// Every state, for ListTransactions' filter check.
    pub const ALL: [TxnState; 6] = [
        TxnState::Empty,
        TxnState::Ongoing,
        TxnState::PrepareCommit,
        TxnState::PrepareAbort,
        TxnState::CompleteCommit,
        TxnState::CompleteAbort,
    ];

    /// Markers are being written: the transaction's outcome is decided but not complete.
    pub fn is_preparing(self) -> bool {
        matches!(self, TxnState::PrepareCommit | TxnState::PrepareAbort)
    }
}

/// What the coordinator knows of one transactional id (the value of its record).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnMetadata {
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// The epoch before the last bump (-1: none): a retried InitProducerId that carries it
    /// gets the current epoch back instead of being fenced.
    pub last_producer_epoch: i16,
    pub timeout_ms: i32,
    pub state: TxnState,
    /// (topic, partition) of every partition in the current transaction.
    pub partitions: BTreeSet<(String, i32)>,
    /// When the current transaction began (ms; -1 when none).
    pub start_ms: i64,
    pub last_update_ms: i64,
    /// Transaction version 2 (KIP-890 part 2): the current transaction was ended by an
    /// EndTxn v5+ and its epoch bumped, so a retry at the epoch before is recognised.
    /// Persisted after the fields above (see [`TxnExtension`]).
    #[serde(skip)]
    pub tv2: bool,
    /// Under TV2, when the epoch ran out: the producer id the decided transaction completes
    /// onto (-1: none).
    #[serde(skip, default = "no_producer_id")]
    pub next_producer_id: i64,
    /// After a completion moved to a new producer id: the one before (-1: none), so a
    /// retried EndTxn from it is answered with the new one.
    #[serde(skip, default = "no_producer_id")]
    pub prev_producer_id: i64,
}

fn no_producer_id() -> i64 {
    -1
}

/// The TV2 fields of [`TxnMetadata`], encoded after the rest: records written before they
/// existed read as "none", and a broker that does not know them ignores the trailing bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnExtension {
    pub tv2: bool,
    pub next_producer_id: i64,
    pub prev_producer_id: i64,
}

impl TxnMetadata {
    pub fn extension(&self) -> TxnExtension {
        TxnExtension {
            tv2: self.tv2,
            next_producer_id: self.next_producer_id,
            prev_producer_id: self.prev_producer_id,
        }
    }

    pub fn set_extension(&mut self, e: TxnExtension) {
        self.tv2 = e.tv2;
        self.next_producer_id = e.next_producer_id;
        self.prev_producer_id = e.prev_producer_id;
    }
}

/// The error a client gets.
pub type Code = ResponseError;

/// An epoch that can still be bumped; past it the coordinator hands out a new producer id.
const MAX_EPOCH: i16 = i16::MAX - 1;

/// What InitProducerId does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitOutcome {
    /// Persist this (state Empty, a new epoch or id), then answer with its id and epoch.
    Ready(TxnMetadata),
    /// An open transaction must be aborted first: persist this (PrepareAbort at a bumped
    /// epoch, fencing the old producer), write its markers, answer CONCURRENT_TRANSACTIONS
    /// so the client retries.
    AbortFirst(TxnMetadata),
    /// A retry of an InitProducerId that already succeeded: answer with these.
    Already {
        producer_id: i64,
        producer_epoch: i16,
    },
}

/// Whether InitProducerId for `current` needs a fresh producer id.
pub fn needs_fresh_producer_id(current: Option<&TxnMetadata>) -> bool {
    match current {
        None => true,
        Some(m) => m.producer_epoch >= MAX_EPOCH && !m.state.is_preparing(),
    }
}

/// InitProducerId with a transactional id. `expected` is the (producer id, epoch) a
/// KIP-360 client sends to recover (None: a fresh start); `fresh_producer_id` is used when
/// [`needs_fresh_producer_id`] said so.
pub fn init(
    current: Option<&TxnMetadata>,
    timeout_ms: i32,
    expected: Option<(i64, i16)>,
    now_ms: i64,
    fresh_producer_id: i64,
) -> Result<InitOutcome, Code> {
    let Some(m) = current else {
        return Ok(InitOutcome::Ready(TxnMetadata {
            producer_id: fresh_producer_id,
            producer_epoch: 0,
            last_producer_epoch: -1,
            timeout_ms,
            state: TxnState::Empty,
            partitions: BTreeSet::new(),
            start_ms: -1,
            last_update_ms: now_ms,
            tv2: false,
            next_producer_id: -1,
            prev_producer_id: -1,
        }));
    };
    if let Some((pid, epoch)) = expected {
        if pid != m.producer_id {
            return Err(ResponseError::ProducerFenced);
        }
        if epoch != m.producer_epoch {
            // The answer to an earlier attempt was lost: the client still holds the epoch
            // before that bump.
            return if epoch == m.last_producer_epoch && m.state == TxnState::Empty {
                Ok(InitOutcome::Already {
                    producer_id: m.producer_id,
                    producer_epoch: m.producer_epoch,
                })
            } else {
                Err(ResponseError::ProducerFenced)
            };
        }
    }
    match m.state {
        TxnState::PrepareCommit | TxnState::PrepareAbort => {
            Err(ResponseError::ConcurrentTransactions)
        }
        TxnState::Ongoing => {
            // Fence the previous incarnation: its epoch is over, and what it began is aborted.
            let mut next = bumped(m);
            next.tv2 = false;
            next.state = TxnState::PrepareAbort;
            next.last_update_ms = now_ms;
            Ok(InitOutcome::AbortFirst(next))
        }
        TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort => {
            let mut next = if m.producer_epoch >= MAX_EPOCH {
                TxnMetadata {
                    producer_id: fresh_producer_id,
                    producer_epoch: 0,
                    last_producer_epoch: -1,
                    prev_producer_id: m.producer_id,
                    ..m.clone()
                }
            } else {
                bumped(m)
            };
            next.timeout_ms = timeout_ms;
            next.tv2 = false;
            next.next_producer_id = -1;
            next.state = TxnState::Empty;
            next.partitions.clear();
            next.start_ms = -1;
            next.last_update_ms = now_ms;
            Ok(InitOutcome::Ready(next))
        }
    }
}

fn bumped(m: &TxnMetadata) -> TxnMetadata {
    TxnMetadata {
        last_producer_epoch: m.producer_epoch,
        producer_epoch: m.producer_epoch.saturating_add(1),
        ..m.clone()
    }
}

/// Checks that a request's producer id and epoch are the transactional id's current ones.
fn check_producer(
    current: Option<&TxnMetadata>,
    pid: i64,
    epoch: i16,
) -> Result<&TxnMetadata, Code> {
    let m = current.ok_or(ResponseError::InvalidProducerIdMapping)?;
    if m.producer_id != pid {
        return Err(ResponseError::InvalidProducerIdMapping);
    }
    if m.producer_epoch != epoch {
        return Err(ResponseError::ProducerFenced);
    }
    Ok(m)
}

/// AddPartitionsToTxn / AddOffsetsToTxn: the metadata to persist (None: every partition is
/// already in the open transaction, nothing to write).
pub fn add_partitions(
    current: Option<&TxnMetadata>,
    pid: i64,
    epoch: i16,
    partitions: &[(String, i32)],
    now_ms: i64,
) -> Result<Option<TxnMetadata>, Code> {
    let m = check_producer(current, pid, epoch)?;
    if m.state.is_preparing() {
        return Err(ResponseError::ConcurrentTransactions);
    }
    if m.state == TxnState::Ongoing && partitions.iter().all(|p| m.partitions.contains(p)) {
        return Ok(None);
    }
    let mut next = m.clone();
    if m.state != TxnState::Ongoing {
        next.partitions.clear();
        next.start_ms = now_ms;
        next.state = TxnState::Ongoing;
    }
    next.partitions.extend(partitions.iter().cloned());
    next.last_update_ms = now_ms;
    Ok(Some(next))
}

/// Whether every partition is in the producer's open transaction (AddPartitionsToTxn v4+
/// verify-only, which partition leaders ask before taking a transactional write).
pub fn verify_partitions(
    current: Option<&TxnMetadata>,
    pid: i64,
    epoch: i16,
    partitions: &[(String, i32)],
) -> Vec<Result<(), Code>> {
    match check_producer(current, pid, epoch) {
        Err(e) => partitions.iter().map(|_| Err(e)).collect(),
        Ok(m) => partitions
            .iter()
            .map(|p| {
                if m.state == TxnState::Ongoing && m.partitions.contains(p) {
                    Ok(())
                } else {
                    Err(ResponseError::InvalidTxnState)
                }
            })
            .collect(),
    }
}

/// EndTxn: the metadata to persist (PrepareCommit/PrepareAbort, whose markers then go out),
/// or None when this is a retry of an end that already completed (answer success).
pub fn end(
    current: Option<&TxnMetadata>,
    pid: i64,
    epoch: i16,
    commit: bool,
    now_ms: i64,
) -> Result<Option<TxnMetadata>, Code> {
    let m = check_producer(current, pid, epoch)?;
    use TxnState::*;
    match (m.state, commit) {
        (Ongoing, _) => {
            let mut next = m.clone();
            next.state = if commit { PrepareCommit } else { PrepareAbort };
            next.last_update_ms = now_ms;
            Ok(Some(next))
        }
        (CompleteCommit, true) | (CompleteAbort, false) => Ok(None),
        (PrepareCommit, true) | (PrepareAbort, false) => Err(ResponseError::ConcurrentTransactions),
        _ => Err(ResponseError::InvalidTxnState),
    }
}

/// What EndTxn v5+ (transaction version 2) does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    /// The metadata to persist (PrepareCommit/PrepareAbort at a bumped epoch), or None for a
    /// retry of an end already decided.
    pub next: Option<TxnMetadata>,
    /// The producer id and epoch the client goes on with (EndTxn v5's answer).
    pub producer_id: i64,
    pub producer_epoch: i16,
}

/// Whether EndTxn v5 from `m`'s producer needs a fresh producer id: its epoch cannot be
/// bumped again.
pub fn end_needs_fresh_producer_id(m: Option<&TxnMetadata>, pid: i64, epoch: i16) -> bool {
    m.is_some_and(|m| {
        m.producer_id == pid && m.producer_epoch == epoch && m.producer_epoch >= MAX_EPOCH
    })
}

/// EndTxn v5+ (KIP-890 part 2): every commit and abort bumps the producer epoch, and the
/// markers carry the bumped epoch, so a late batch of the ended transaction is fenced at
/// every partition. When the epoch is exhausted the transaction completes onto
/// `fresh_producer_id` at epoch 0. A retry (the epoch before the bump, or the producer id
/// before the move) gets the identity it should go on with. An abort with nothing open is
/// valid (it bumps the epoch); a commit with nothing open is INVALID_TXN_STATE.
pub fn end_v2(
    current: Option<&TxnMetadata>,
    pid: i64,
    epoch: i16,
    commit: bool,
    now_ms: i64,
    fresh_producer_id: i64,
) -> Result<Ended, Code> {
    let m = current.ok_or(ResponseError::InvalidProducerIdMapping)?;
    let bump_retry = m.tv2
        && m.producer_id == pid
        && epoch >= 0
        && m.producer_epoch == epoch.saturating_add(1)
        && m.last_producer_epoch == epoch;
    let overflow_retry = m.tv2
        && m.prev_producer_id == pid
        && m.producer_id != pid
        && epoch == MAX_EPOCH
        && m.producer_epoch == 0;
    let retry = bump_retry || overflow_retry;
    if m.producer_id != pid && !overflow_retry {
        return Err(ResponseError::InvalidProducerIdMapping);
    }
    if m.producer_epoch != epoch && !retry {
        return Err(ResponseError::ProducerFenced);
    }
    let goes_on = |m: &TxnMetadata| match m.next_producer_id {
        -1 => (m.producer_id, m.producer_epoch),
        next => (next, 0),
    };
    use TxnState::*;
    let decide = |m: &TxnMetadata| {
        let mut next = m.clone();
        next.tv2 = true;
        next.last_producer_epoch = m.producer_epoch;
        if m.producer_epoch >= MAX_EPOCH {
            next.producer_epoch = i16::MAX;
            next.next_producer_id = fresh_producer_id;
        } else {
            next.producer_epoch = m.producer_epoch + 1;
        }
        if m.state != Ongoing {
            // Nothing open: an abort of an empty transaction.
            next.partitions.clear();
            next.start_ms = now_ms;
        }
        next.state = if commit { PrepareCommit } else { PrepareAbort };
        next.last_update_ms = now_ms;
        next
    };
    let decided = |next: TxnMetadata| {
        let (producer_id, producer_epoch) = goes_on(&next);
        Ok(Ended {
            next: Some(next),
            producer_id,
            producer_epoch,
        })
    };
    match (m.state, commit, retry) {
        (Ongoing, _, false) => decided(decide(m)),
        (Empty | CompleteCommit | CompleteAbort, false, false) => decided(decide(m)),
        (CompleteCommit, true, true) | (CompleteAbort, false, true) => Ok(Ended {
            next: None,
            producer_id: m.producer_id,
            producer_epoch: m.producer_epoch,
        }),
        (PrepareCommit, true, _) | (PrepareAbort, false, _) => {
            Err(ResponseError::ConcurrentTransactions)
        }
        // The next transaction began: the end it retries was answered long ago.
        (Ongoing, _, true) => Err(ResponseError::ProducerFenced),
        _ => Err(ResponseError::InvalidTxnState),
    }
}

/// The metadata once every marker of a PrepareCommit/PrepareAbort is written.
pub fn complete(m: &TxnMetadata, now_ms: i64) -> TxnMetadata {
    let mut next = m.clone();
    if m.next_producer_id >= 0 {
        // TV2 ran out of epochs: the producer goes on under its new id.
        next.prev_producer_id = m.producer_id;
        next.producer_id = m.next_producer_id;
        next.producer_epoch = 0;
        next.last_producer_epoch = -1;
        next.next_producer_id = -1;
    }
    next.state = match m.state {
        TxnState::PrepareCommit => TxnState::CompleteCommit,
        TxnState::PrepareAbort => TxnState::CompleteAbort,
        other => other,
    };
    next.partitions.clear();
    next.start_ms = -1;
    next.last_update_ms = now_ms;
    next
}

/// A transaction open longer than its timeout.
pub fn timed_out(m: &TxnMetadata, now_ms: i64) -> bool {
    m.state == TxnState::Ongoing && now_ms > m.start_ms.saturating_add(m.timeout_ms as i64)
}

/// Aborting a timed-out transaction: the epoch is bumped so the producer that went quiet is
/// fenced if it comes back, then PrepareAbort. Even the last epoch (32766) is bumped, to
/// 32767: the markers must carry an epoch above the transaction's batches, so that under
/// transaction version 2 no partition takes them for the end of an earlier transaction
/// (the next InitProducerId then hands out a new producer id).
pub fn abort_timed_out(m: &TxnMetadata, now_ms: i64) -> TxnMetadata {
    let mut next = bumped(m);
    // Not the client's end: its EndTxn at the old epoch is fenced, not taken for a retry.
    next.tv2 = false;
    next.state = TxnState::PrepareAbort;
    next.last_update_ms = now_ms;
    next
}

/// An idle transactional id past `transactional.id.expiration.ms`.
pub fn expired(m: &TxnMetadata, now_ms: i64, expiration_ms: i64) -> bool {
    matches!(
        m.state,
        TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
    ) && now_ms.saturating_sub(m.last_update_ms) > expiration_ms
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready(r: Result<InitOutcome, Code>) -> TxnMetadata {
        match r {
            Ok(InitOutcome::Ready(m)) => m,
            other => panic!("expected Ready, got {other:?}"),
        }
    }

    fn tp(t: &str, p: i32) -> (String, i32) {
        (t.to_string(), p)
    }

    #[test]
    fn a_transaction_from_init_to_commit() {
        let m = ready(init(None, 60_000, None, 1, 77));
        assert_eq!(
            (m.producer_id, m.producer_epoch, m.state),
            (77, 0, TxnState::Empty)
        );
        let m = add_partitions(Some(&m), 77, 0, &[tp("a", 0)], 2)
            .expect("add")
            .expect("changed");
        assert_eq!((m.state, m.start_ms), (TxnState::Ongoing, 2));
        assert_eq!(
            add_partitions(Some(&m), 77, 0, &[tp("a", 0)], 3),
            Ok(None),
            "nothing new to persist"
        );
        let m = add_partitions(Some(&m), 77, 0, &[tp("b", 1)], 3)
            .expect("add")
            .expect("changed");
        assert_eq!(m.partitions.len(), 2);
        assert_eq!(
            m.start_ms, 2,
            "the transaction began with its first partition"
        );
        let prepared = end(Some(&m), 77, 0, true, 4)
            .expect("end")
            .expect("prepare");
        assert_eq!(prepared.state, TxnState::PrepareCommit);
        assert_eq!(
            add_partitions(Some(&prepared), 77, 0, &[tp("c", 0)], 5),
            Err(ResponseError::ConcurrentTransactions)
        );
        assert_eq!(
            end(Some(&prepared), 77, 0, true, 5),
            Err(ResponseError::ConcurrentTransactions)
        );
        assert_eq!(
            end(Some(&prepared), 77, 0, false, 5),
            Err(ResponseError::InvalidTxnState)
        );
        let done = complete(&prepared, 6);
        assert_eq!(done.state, TxnState::CompleteCommit);
        assert!(done.partitions.is_empty());
        assert_eq!(
            end(Some(&done), 77, 0, true, 7),
            Ok(None),
            "a retried commit succeeds"
        );
        assert_eq!(
            end(Some(&done), 77, 0, false, 7),
            Err(ResponseError::InvalidTxnState)
        );
        // The next transaction starts afresh.
        let next = add_partitions(Some(&done), 77, 0, &[tp("c", 0)], 8)
            .expect("add")
            .expect("changed");
        assert_eq!(next.partitions.len(), 1);
        assert_eq!(next.start_ms, 8);
    }

    #[test]
    fn a_second_incarnation_fences_the_first() {
        let m = ready(init(None, 60_000, None, 1, 5));
        let open = add_partitions(Some(&m), 5, 0, &[tp("a", 0)], 2)
            .expect("add")
            .expect("changed");
        // The new producer's InitProducerId aborts the open transaction at a bumped epoch.
        let fenced = match init(Some(&open), 60_000, None, 3, -1) {
            Ok(InitOutcome::AbortFirst(m)) => m,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            (fenced.state, fenced.producer_epoch),
            (TxnState::PrepareAbort, 1)
        );
        assert_eq!(
            fenced.partitions.len(),
            1,
            "the abort's markers go to its partitions"
        );
        // Until its markers are written, the new producer is asked to retry.
        assert_eq!(
            init(Some(&fenced), 60_000, None, 4, -1),
            Err(ResponseError::ConcurrentTransactions)
        );
        let aborted = complete(&fenced, 5);
        let again = ready(init(Some(&aborted), 60_000, None, 6, -1));
        assert_eq!((again.producer_id, again.producer_epoch), (5, 2));
        // The old producer, at epoch 0, is fenced everywhere.
        assert_eq!(
            add_partitions(Some(&again), 5, 0, &[tp("a", 0)], 7),
            Err(ResponseError::ProducerFenced)
        );
        assert_eq!(
            end(Some(&again), 5, 0, true, 7),
            Err(ResponseError::ProducerFenced)
        );
        assert_eq!(
            end(Some(&again), 6, 2, true, 7),
            Err(ResponseError::InvalidProducerIdMapping)
        );
        assert_eq!(
            end(None, 6, 2, true, 7),
            Err(ResponseError::InvalidProducerIdMapping)
        );
    }

    #[test]
    fn kip_360_recovery_and_lost_answers() {
        let m = ready(init(None, 1000, None, 1, 9));
        let m = ready(init(Some(&m), 1000, Some((9, 0)), 2, -1));
        assert_eq!(m.producer_epoch, 1);
        // The answer was lost: the client retries with epoch 0 and gets epoch 1 again.
        assert_eq!(
            init(Some(&m), 1000, Some((9, 0)), 3, -1),
            Ok(InitOutcome::Already {
                producer_id: 9,
                producer_epoch: 1
            })
        );
        assert_eq!(
            init(Some(&m), 1000, Some((8, 1)), 3, -1),
            Err(ResponseError::ProducerFenced)
        );
        // Epoch exhaustion moves to a new producer id.
        let worn = TxnMetadata {
            producer_epoch: MAX_EPOCH,
            ..m
        };
        assert!(!end_needs_fresh_producer_id(Some(&worn), 9, MAX_EPOCH - 1));
        assert!(needs_fresh_producer_id(Some(&worn)));
        let fresh = ready(init(Some(&worn), 1000, None, 4, 10));
        assert_eq!((fresh.producer_id, fresh.producer_epoch), (10, 0));
    }

    /// Transaction version 2: each end bumps the epoch, the answer carries the epoch to go
    /// on with, retries at the old epoch are recognised, and late requests are fenced.
    #[test]
    fn tv2_ends_bump_the_epoch_and_retries_are_answered() {
        let m = ready(init(None, 60_000, None, 1, 40));
        // The first transaction: partitions added implicitly (by the leaders), then commit.
        let open = add_partitions(Some(&m), 40, 0, &[tp("a", 0)], 2)
            .expect("add")
            .expect("changed");
        let ended = end_v2(Some(&open), 40, 0, true, 3, -1).expect("end");
        let prepared = ended.next.clone().expect("decided");
        assert_eq!(
            (
                prepared.state,
                prepared.producer_epoch,
                prepared.last_producer_epoch
            ),
            (TxnState::PrepareCommit, 1, 0),
            "decided at the bumped epoch: the markers carry it"
        );
        assert_eq!((ended.producer_id, ended.producer_epoch), (40, 1));
        // A retry while the markers are written: asked to wait.
        assert_eq!(
            end_v2(Some(&prepared), 40, 0, true, 4, -1),
            Err(ResponseError::ConcurrentTransactions)
        );
        assert_eq!(
            end_v2(Some(&prepared), 40, 0, false, 4, -1),
            Err(ResponseError::InvalidTxnState)
        );
        let done = complete(&prepared, 5);
        // The answer was lost: the retry at epoch 0 gets the epoch to go on with.
        assert_eq!(
            end_v2(Some(&done), 40, 0, true, 6, -1),
            Ok(Ended {
                next: None,
                producer_id: 40,
                producer_epoch: 1
            })
        );
        assert_eq!(
            end_v2(Some(&done), 40, 0, false, 6, -1),
            Err(ResponseError::InvalidTxnState)
        );
        // A commit with nothing open is refused; an abort with nothing open bumps.
        assert_eq!(
            end_v2(Some(&done), 40, 1, true, 6, -1),
            Err(ResponseError::InvalidTxnState)
        );
        let empty_abort = end_v2(Some(&done), 40, 1, false, 6, -1).expect("abort");
        let aborting = empty_abort.next.expect("decided");
        assert_eq!(
            (aborting.state, aborting.producer_epoch),
            (TxnState::PrepareAbort, 2)
        );
        assert!(aborting.partitions.is_empty(), "no markers to write");
        let done = complete(&aborting, 7);
        // The second transaction, at epoch 2; a zombie at epoch 0 is fenced everywhere.
        let open = add_partitions(Some(&done), 40, 2, &[tp("b", 0)], 8)
            .expect("add")
            .expect("changed");
        assert_eq!(
            add_partitions(Some(&open), 40, 1, &[tp("b", 1)], 8),
            Err(ResponseError::ProducerFenced)
        );
        assert_eq!(
            end_v2(Some(&open), 40, 0, true, 8, -1),
            Err(ResponseError::ProducerFenced)
        );
        assert_eq!(
            end_v2(Some(&open), 40, 1, true, 8, -1),
            Err(ResponseError::ProducerFenced),
            "a retry of an end answered before this transaction began"
        );
        assert_eq!(
            end_v2(Some(&open), 41, 2, true, 8, -1),
            Err(ResponseError::InvalidProducerIdMapping)
        );
    }

    /// Under TV2 an exhausted epoch moves the producer to a new id when the transaction
    /// completes; the markers go out at the last epoch of the old id.
    #[test]
    fn tv2_epoch_exhaustion_moves_to_a_new_producer_id() {
        let m = ready(init(None, 60_000, None, 1, 50));
        let worn = TxnMetadata {
            producer_epoch: MAX_EPOCH,
            ..m
        };
        let open = add_partitions(Some(&worn), 50, MAX_EPOCH, &[tp("a", 0)], 2)
            .expect("add")
            .expect("changed");
        assert!(end_needs_fresh_producer_id(Some(&open), 50, MAX_EPOCH));
        let ended = end_v2(Some(&open), 50, MAX_EPOCH, false, 3, 51).expect("end");
        let prepared = ended.next.clone().expect("decided");
        assert_eq!(
            (prepared.producer_id, prepared.producer_epoch),
            (50, i16::MAX),
            "markers fence the old id's every epoch"
        );
        assert_eq!((ended.producer_id, ended.producer_epoch), (51, 0));
        let done = complete(&prepared, 4);
        assert_eq!(
            (done.producer_id, done.producer_epoch, done.prev_producer_id),
            (51, 0, 50)
        );
        // A retry from the old id's last epoch is answered with the new one; the old id at
        // any other epoch is a zombie.
        assert_eq!(
            end_v2(Some(&done), 50, 7, false, 5, -1),
            Err(ResponseError::InvalidProducerIdMapping)
        );
        assert_eq!(
            end_v2(Some(&done), 50, MAX_EPOCH, false, 5, -1),
            Ok(Ended {
                next: None,
                producer_id: 51,
                producer_epoch: 0
            })
        );
        // The extension survives encoding, and a record without it reads as none.
        let mut copy = done.clone();
        copy.set_extension(TxnExtension {
            tv2: false,
            next_producer_id: -1,
            prev_producer_id: -1,
        });
        copy.set_extension(done.extension());
        assert_eq!(copy, done);
    }

    #[test]
    fn timeouts_abort_with_a_bumped_epoch_and_idle_ids_expire() {
        let m = ready(init(None, 1000, None, 0, 3));
        let open = add_partitions(Some(&m), 3, 0, &[tp("a", 0)], 100)
            .expect("add")
            .expect("changed");
        assert!(!timed_out(&open, 1100));
        assert!(timed_out(&open, 1101));
        let aborting = abort_timed_out(&open, 1101);
        assert_eq!(
            (aborting.state, aborting.producer_epoch),
            (TxnState::PrepareAbort, 1)
        );
        assert_eq!(
            end(Some(&aborting), 3, 0, true, 1102),
            Err(ResponseError::ProducerFenced),
            "the late producer learns it was fenced"
        );
        let done = complete(&aborting, 1200);
        assert!(!expired(&done, 1300, 1000));
        assert!(expired(&done, 2201, 1000));
        assert!(
            !expired(&open, 1_000_000, 1000),
            "an open transaction never expires"
        );
        assert_eq!(
            verify_partitions(Some(&open), 3, 0, &[tp("a", 0), tp("b", 0)]),
            vec![Ok(()), Err(ResponseError::InvalidTxnState)]
        );
    }
}
