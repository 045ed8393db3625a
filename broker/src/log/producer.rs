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

/// The entry after appending `batch` at `epoch`.
pub fn record(entry: Option<&ProducerEntry>, epoch: i16, batch: BatchSeq) -> ProducerEntry {
    let mut next = match entry {
        Some(e) if e.epoch == epoch => e.clone(),
        _ => ProducerEntry {
            epoch,
            batches: VecDeque::new(),
        },
    };
    next.batches.push_back(batch);
    while next.batches.len() > REMEMBERED_BATCHES {
        next.batches.pop_front();
    }
    next
}

impl ProducerEntry {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(3 + self.batches.len() * 24);
        out.extend_from_slice(&self.epoch.to_be_bytes());
        out.push(self.batches.len() as u8);
        for b in &self.batches {
            out.extend_from_slice(&b.first_seq.to_be_bytes());
            out.extend_from_slice(&b.last_seq.to_be_bytes());
            out.extend_from_slice(&b.first_offset.to_be_bytes());
            out.extend_from_slice(&b.last_offset.to_be_bytes());
        }
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
        Some(Self { epoch, batches })
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
        assert_eq!(ProducerEntry::decode(&e.encode()), Some(e));
    }
}
