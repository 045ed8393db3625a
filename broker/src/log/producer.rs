//! Idempotent producers: per-partition producer state, as Kafka keeps it.
//!
//! For each producer id the partition remembers the epoch and the last five batches it
//! appended (first and last sequence, first and last offset). A batch is then:
//! - a **duplicate** (a retry) if its sequences match a remembered batch: answered with the
//!   original offsets, appended nothing;
//! - **next** if it starts right after the last batch (or at 0 in a new epoch): appended;
//! - otherwise refused: OUT_OF_ORDER_SEQUENCE_NUMBER, INVALID_PRODUCER_EPOCH for an old epoch,
//!   UNKNOWN_PRODUCER_ID for a producer this partition has no state for at a sequence above 0.
//!
//! The state is persisted in the same atomic write as the batch it describes.
//!
//! Transactions add two fields: the first offset of the producer's open transaction on this
//! partition (what holds the last stable offset back until its marker arrives) and the
//! coordinator epoch of the last marker (an older coordinator's markers are fenced).

use std::collections::VecDeque;

use crate::error::LogError;

/// Batches remembered per producer (Kafka's and librdkafka's in-flight limit).
pub const REMEMBERED_BATCHES: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSeq {
    pub first_seq: i32,
    pub last_seq: i32,
    pub first_offset: i64,
    pub last_offset: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerEntry {
    pub epoch: i16,
    pub batches: VecDeque<BatchSeq>,
    /// First offset of this producer's open transaction here, until its marker.
    pub txn_first_offset: Option<i64>,
    /// Coordinator epoch of the last marker written for this producer (-1: none).
    pub coordinator_epoch: i32,
    /// Timestamp (ms) of the last batch (DescribeProducers' last_timestamp).
    pub last_timestamp: i64,
}

impl ProducerEntry {
    fn new(epoch: i16) -> Self {
        Self {
            epoch,
            batches: VecDeque::new(),
            txn_first_offset: None,
            coordinator_epoch: -1,
            last_timestamp: -1,
        }
    }

    /// The last sequence appended in the current epoch (-1: none).
    pub fn last_sequence(&self) -> i32 {
        self.batches.back().map_or(-1, |b| b.last_seq)
    }
}

/// What to do with an incoming batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqCheck {
    Append,
    Duplicate(BatchSeq),
}

fn next_seq(seq: i32) -> i32 {
    if seq == i32::MAX {
        0
    } else {
        seq + 1
    }
}

/// Decides a batch of `producer_id` at `epoch` with sequences `first_seq..=last_seq`.
pub fn check(
    entry: Option<&ProducerEntry>,
    producer_id: i64,
    epoch: i16,
    first_seq: i32,
    last_seq: i32,
) -> Result<SeqCheck, LogError> {
    let Some(entry) = entry else {
        return if first_seq == 0 {
            Ok(SeqCheck::Append)
        } else {
            Err(LogError::UnknownProducerId {
                producer_id,
                first_seq,
            })
        };
    };
    if epoch < entry.epoch {
        return Err(LogError::InvalidProducerEpoch {
            producer_id,
            epoch,
            current: entry.epoch,
        });
    }
    if epoch > entry.epoch {
        return if first_seq == 0 {
            Ok(SeqCheck::Append)
        } else {
            Err(LogError::OutOfOrderSequence {
                producer_id,
                expected: 0,
                got: first_seq,
            })
        };
    }
    if let Some(b) = entry
        .batches
        .iter()
        .find(|b| b.first_seq == first_seq && b.last_seq == last_seq)
    {
        return Ok(SeqCheck::Duplicate(*b));
    }
    let expected = entry.batches.back().map_or(0, |b| next_seq(b.last_seq));
    if first_seq == expected {
        Ok(SeqCheck::Append)
    } else {
        Err(LogError::OutOfOrderSequence {
            producer_id,
            expected,
            got: first_seq,
        })
    }
}

/// The entry after appending `batch` at `epoch`. A batch without sequences (the
/// coordinator's transactional offset commits) is not remembered for deduplication.
pub fn record(entry: Option<&ProducerEntry>, epoch: i16, batch: BatchSeq) -> ProducerEntry {
    let mut next = at_epoch(entry, epoch);
    if batch.first_seq >= 0 {
        next.batches.push_back(batch);
    }
    while next.batches.len() > REMEMBERED_BATCHES {
        next.batches.pop_front();
    }
    next
}

/// The entry moved to `epoch`: the same if it is the current one; a bumped epoch restarts
/// sequences but keeps an open transaction (only its marker closes it).
pub fn at_epoch(entry: Option<&ProducerEntry>, epoch: i16) -> ProducerEntry {
    match entry {
        Some(e) if e.epoch == epoch => e.clone(),
        Some(e) => ProducerEntry {
            txn_first_offset: e.txn_first_offset,
            coordinator_epoch: e.coordinator_epoch,
            last_timestamp: e.last_timestamp,
            ..ProducerEntry::new(epoch)
        },
        None => ProducerEntry::new(epoch),
    }
}

/// Checks a marker of `producer_id` at `epoch` from coordinator epoch `coordinator_epoch`:
/// an older producer epoch or an older coordinator is fenced.
pub fn check_marker(
    entry: Option<&ProducerEntry>,
    producer_id: i64,
    epoch: i16,
    coordinator_epoch: i32,
) -> Result<(), LogError> {
    let Some(e) = entry else {
        return Ok(());
    };
    if epoch < e.epoch {
        return Err(LogError::InvalidProducerEpoch {
            producer_id,
            epoch,
            current: e.epoch,
        });
    }
    if coordinator_epoch < e.coordinator_epoch {
        return Err(LogError::CoordinatorFenced {
            producer_id,
            coordinator_epoch,
            current: e.coordinator_epoch,
        });
    }
    Ok(())
}

impl ProducerEntry {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(3 + self.batches.len() * 24 + 21);
        out.extend_from_slice(&self.epoch.to_be_bytes());
        out.push(self.batches.len() as u8);
        for b in &self.batches {
            out.extend_from_slice(&b.first_seq.to_be_bytes());
            out.extend_from_slice(&b.last_seq.to_be_bytes());
            out.extend_from_slice(&b.first_offset.to_be_bytes());
            out.extend_from_slice(&b.last_offset.to_be_bytes());
        }
        // Transaction fields (absent in entries written before transactions existed).
        out.extend_from_slice(&self.txn_first_offset.unwrap_or(-1).to_be_bytes());
        out.extend_from_slice(&self.coordinator_epoch.to_be_bytes());
        out.extend_from_slice(&self.last_timestamp.to_be_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let epoch = i16::from_be_bytes(bytes.get(0..2)?.try_into().ok()?);
        let n = *bytes.get(2)? as usize;
        let mut batches = VecDeque::with_capacity(n);
        for i in 0..n {
            let b = bytes.get(3 + i * 24..3 + (i + 1) * 24)?;
            batches.push_back(BatchSeq {
                first_seq: i32::from_be_bytes(b[0..4].try_into().ok()?),
                last_seq: i32::from_be_bytes(b[4..8].try_into().ok()?),
                first_offset: i64::from_be_bytes(b[8..16].try_into().ok()?),
                last_offset: i64::from_be_bytes(b[16..24].try_into().ok()?),
            });
        }
        let rest = bytes.get(3 + n * 24..)?;
        let (txn_first_offset, coordinator_epoch, last_timestamp) = if rest.len() >= 20 {
            let first = i64::from_be_bytes(rest[0..8].try_into().ok()?);
            let coord = i32::from_be_bytes(rest[8..12].try_into().ok()?);
            let ts = i64::from_be_bytes(rest[12..20].try_into().ok()?);
            ((first >= 0).then_some(first), coord, ts)
        } else {
            (None, -1, -1)
        };
        Some(Self {
            epoch,
            batches,
            txn_first_offset,
            coordinator_epoch,
            last_timestamp,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(first: i32, last: i32, off: i64) -> BatchSeq {
        BatchSeq {
            first_seq: first,
            last_seq: last,
            first_offset: off,
            last_offset: off + (last - first) as i64,
        }
    }

    #[test]
    fn sequences_duplicates_gaps_and_epochs() {
        assert_eq!(check(None, 1, 0, 0, 4), Ok(SeqCheck::Append));
        assert!(matches!(
            check(None, 1, 0, 5, 9),
            Err(LogError::UnknownProducerId { .. })
        ));
        let e = record(None, 0, seq(0, 4, 100));
        assert_eq!(check(Some(&e), 1, 0, 5, 9), Ok(SeqCheck::Append));
        assert_eq!(
            check(Some(&e), 1, 0, 0, 4),
            Ok(SeqCheck::Duplicate(seq(0, 4, 100)))
        );
        assert!(matches!(
            check(Some(&e), 1, 0, 7, 9),
            Err(LogError::OutOfOrderSequence { expected: 5, .. })
        ));
        assert!(matches!(
            check(Some(&e), 1, 1, 3, 4),
            Err(LogError::OutOfOrderSequence { expected: 0, .. })
        ));
        assert_eq!(
            check(Some(&e), 1, 1, 0, 0),
            Ok(SeqCheck::Append),
            "a bumped epoch starts at 0"
        );
        let bumped = record(Some(&e), 1, seq(0, 0, 200));
        assert!(matches!(
            check(Some(&bumped), 1, 0, 5, 9),
            Err(LogError::InvalidProducerEpoch { .. })
        ));
    }

    #[test]
    fn remembers_five_batches_and_wraps_sequences() {
        let mut e = record(None, 0, seq(0, 0, 0));
        for i in 1..8 {
            e = record(Some(&e), 0, seq(i, i, i as i64));
        }
        assert_eq!(e.batches.len(), REMEMBERED_BATCHES);
        assert_eq!(
            check(Some(&e), 1, 0, 3, 3),
            Ok(SeqCheck::Duplicate(seq(3, 3, 3)))
        );
        assert!(check(Some(&e), 1, 0, 1, 1).is_err(), "too old to recognise");
        let wrapped = record(None, 0, seq(i32::MAX - 1, i32::MAX, 10));
        assert_eq!(check(Some(&wrapped), 1, 0, 0, 3), Ok(SeqCheck::Append));
        assert_eq!(ProducerEntry::decode(&e.encode()), Some(e.clone()));
        let mut open = e.clone();
        open.txn_first_offset = Some(42);
        open.coordinator_epoch = 3;
        assert_eq!(ProducerEntry::decode(&open.encode()), Some(open));
        // An entry written before transactions decodes with none open.
        let old = &e.encode()[..3 + e.batches.len() * 24];
        assert_eq!(ProducerEntry::decode(old), Some(e));
    }

    #[test]
    fn markers_are_fenced_by_producer_and_coordinator_epoch() {
        let mut e = record(None, 2, seq(0, 0, 0));
        e.coordinator_epoch = 5;
        assert!(check_marker(Some(&e), 1, 2, 5).is_ok());
        assert!(check_marker(Some(&e), 1, 3, 6).is_ok());
        assert!(matches!(
            check_marker(Some(&e), 1, 1, 5),
            Err(LogError::InvalidProducerEpoch { .. })
        ));
        assert!(matches!(
            check_marker(Some(&e), 1, 2, 4),
            Err(LogError::CoordinatorFenced { .. })
        ));
        assert!(check_marker(None, 1, 0, 0).is_ok());
        // A bumped epoch keeps the open transaction.
        e.txn_first_offset = Some(7);
        assert_eq!(at_epoch(Some(&e), 3).txn_first_offset, Some(7));
    }
}
