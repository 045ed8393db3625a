//! The consistency checker: a history of sends and acknowledgements, then a full read of the
//! log, and a verdict. Used by every test that injects faults while producing.
//!
//! Each sent record carries a unique value; the checker demands that
//! - every acknowledged record is in the log (**lost** otherwise),
//! - at the offset its acknowledgement named (**misplaced** otherwise),
//! - exactly once (**duplicates** otherwise, acknowledged or not),
//! - in send order per producer and partition (**reordered** otherwise),
//! - and that the log holds nothing that was never sent (**phantoms**).
//!
//! Records sent but never acknowledged may or may not be there; both are fine.
//!
//! [`check_transformed`] judges a consume-transform-produce pipeline the same way: what a
//! read_committed consumer got from its output against the input log it consumed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

/// One record a producer sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub producer: u32,
    pub partition: i32,
    /// The producer's send order within the partition.
    pub seq: u64,
    pub value: Vec<u8>,
    /// The offset the broker acknowledged, if it did.
    pub acked_offset: Option<i64>,
    /// When the acknowledgement arrived, in ms since the producer started.
    pub acked_at_ms: Option<u64>,
}

/// One record as the final read found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub partition: i32,
    pub offset: i64,
    pub value: Vec<u8>,
}

/// The verdict, with up to a few examples of each anomaly.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub sent: usize,
    pub acked: usize,
    pub read: usize,
    /// Sent, not acknowledged, yet in the log (allowed).
    pub unacked_present: usize,
    pub lost: Vec<String>,
    pub misplaced: Vec<String>,
    pub duplicates: Vec<String>,
    pub reordered: Vec<String>,
    pub phantoms: Vec<String>,
}

impl Report {
    /// True when no anomaly was found.
    pub fn ok(&self) -> bool {
        self.lost.is_empty()
            && self.misplaced.is_empty()
            && self.duplicates.is_empty()
            && self.reordered.is_empty()
            && self.phantoms.is_empty()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sent {} acked {} read {} (unacked but present {}): lost {}, misplaced {}, \
             duplicates {}, reordered {}, phantoms {}",
            self.sent,
            self.acked,
            self.read,
            self.unacked_present,
            self.lost.len(),
            self.misplaced.len(),
            self.duplicates.len(),
            self.reordered.len(),
            self.phantoms.len()
        )?;
        for (name, v) in [
            ("lost", &self.lost),
            ("misplaced", &self.misplaced),
            ("duplicates", &self.duplicates),
            ("reordered", &self.reordered),
            ("phantoms", &self.phantoms),
        ] {
            if !v.is_empty() {
                write!(
                    f,
                    "\n  {name}: {}",
                    v.iter().take(5).cloned().collect::<Vec<_>>().join("; ")
                )?;
            }
        }
        Ok(())
    }
}

fn show(value: &[u8]) -> String {
    String::from_utf8_lossy(value).into_owned()
}

/// Values a consumer read that the final log does not hold (a consumer must never see a
/// record that is later lost: it only reads below the high watermark).
pub fn consumed_outside_log(consumed: &[Vec<u8>], read: &[Found]) -> Vec<String> {
    let log: std::collections::HashSet<&[u8]> = read.iter().map(|r| r.value.as_slice()).collect();
    consumed
        .iter()
        .filter(|v| !log.contains(v.as_slice()))
        .map(|v| show(v))
        .collect()
}

/// Checks `read` (every record of every partition, from offset 0 to the end) against `sent`.
pub fn check(sent: &[Sent], read: &[Found]) -> Report {
    let mut report = Report {
        sent: sent.len(),
        acked: sent.iter().filter(|s| s.acked_offset.is_some()).count(),
        read: read.len(),
        ..Report::default()
    };
    let by_value: HashMap<&[u8], &Sent> = sent.iter().map(|s| (s.value.as_slice(), s)).collect();
    let mut seen: HashMap<&[u8], Vec<(i32, i64)>> = HashMap::new();
    for r in read {
        seen.entry(r.value.as_slice())
            .or_default()
            .push((r.partition, r.offset));
        if !by_value.contains_key(r.value.as_slice()) {
            report.phantoms.push(format!(
                "{} at {}:{}",
                show(&r.value),
                r.partition,
                r.offset
            ));
        }
    }
    for s in sent {
        let places = seen
            .get(s.value.as_slice())
            .map_or(&[][..], |v| v.as_slice());
        if places.len() > 1 {
            report
                .duplicates
                .push(format!("{} at {places:?}", show(&s.value)));
        }
        match (s.acked_offset, places.first()) {
            (Some(acked), None) => report.lost.push(format!(
                "{} acked at {}:{acked}",
                show(&s.value),
                s.partition
            )),
            (Some(acked), Some(&(p, o))) if (p, o) != (s.partition, acked) => {
                report.misplaced.push(format!(
                    "{} acked at {}:{acked}, found at {p}:{o}",
                    show(&s.value),
                    s.partition
                ))
            }
            (None, Some(_)) => report.unacked_present += 1,
            _ => {}
        }
    }
    // Send order per (producer, partition): the sequence numbers found must grow with offset.
    let mut order: BTreeMap<(u32, i32), Vec<(i64, u64)>> = BTreeMap::new();
    for r in read {
        if let Some(s) = by_value.get(r.value.as_slice()) {
            order
                .entry((s.producer, r.partition))
                .or_default()
                .push((r.offset, s.seq));
        }
    }
    for ((producer, partition), mut v) in order {
        v.sort_unstable();
        for w in v.windows(2) {
            if w[1].1 <= w[0].1 {
                report.reordered.push(format!(
                    "producer {producer} partition {partition}: seq {} at offset {} after seq {} at {}",
                    w[1].1, w[1].0, w[0].1, w[0].0
                ));
            }
        }
    }
    report
}

/// The verdict on an exactly-once consume-transform-produce pipeline that maps input
/// partition p to output partition p, with up to a few examples of each anomaly.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TransformReport {
    /// Records in the input log.
    pub input: usize,
    /// Input records the producer had acknowledged (all of them should be in the input log;
    /// [`check`] on the input says so).
    pub acked: usize,
    /// Records a read_committed consumer got from the output.
    pub output: usize,
    /// Input records found transformed in the output exactly once.
    pub exactly_once: usize,
    /// Of those, the acknowledged ones.
    pub acked_exactly_once: usize,
    /// Input records (or acknowledged ones missing from the input log) not in the output.
    pub lost: Vec<String>,
    /// Of those, the acknowledged ones.
    pub acked_lost: usize,
    /// Input records in the output more than once.
    pub duplicates: Vec<String>,
    /// Output records no input record transforms into.
    pub phantoms: Vec<String>,
    /// Output records in another partition than their input record.
    pub misrouted: Vec<String>,
    /// Output records out of their input partition's order.
    pub reordered: Vec<String>,
}

impl TransformReport {
    /// True when no anomaly was found.
    pub fn ok(&self) -> bool {
        self.lost.is_empty()
            && self.duplicates.is_empty()
            && self.phantoms.is_empty()
            && self.misrouted.is_empty()
            && self.reordered.is_empty()
    }
}

impl fmt::Display for TransformReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "input {} ({} acked), committed output {}: exactly once {} ({} of the acked), \
             lost {} ({} acked), duplicates {}, phantoms {}, misrouted {}, reordered {}",
            self.input,
            self.acked,
            self.output,
            self.exactly_once,
            self.acked_exactly_once,
            self.lost.len(),
            self.acked_lost,
            self.duplicates.len(),
            self.phantoms.len(),
            self.misrouted.len(),
            self.reordered.len()
        )?;
        for (name, v) in [
            ("lost", &self.lost),
            ("duplicates", &self.duplicates),
            ("phantoms", &self.phantoms),
            ("misrouted", &self.misrouted),
            ("reordered", &self.reordered),
        ] {
            if !v.is_empty() {
                write!(
                    f,
                    "\n  {name}: {}",
                    v.iter().take(5).cloned().collect::<Vec<_>>().join("; ")
                )?;
            }
        }
        Ok(())
    }
}

/// An input record a pipeline's output record should come from.
struct Source<'a> {
    /// Partition and offset in the input log; None for an acknowledged record the input log
    /// does not hold.
    at: Option<(i32, i64)>,
    value: &'a [u8],
}

/// Checks a pipeline's `output` (what a read_committed consumer got, every partition from the
/// start) against its `input` log (every record, every partition) and the input values the
/// producer had `acked`: each input record must be in the output exactly once as
/// `transform(value)`, in the same partition, in input order, and the output must hold
/// nothing else. Output values must be distinct for distinct inputs.
pub fn check_transformed(
    input: &[Found],
    acked: &HashSet<Vec<u8>>,
    output: &[Found],
    transform: fn(&[u8]) -> Vec<u8>,
) -> TransformReport {
    let mut report = TransformReport {
        input: input.len(),
        acked: acked.len(),
        output: output.len(),
        ..TransformReport::default()
    };
    // Output value -> the input record it comes from.
    let mut sources: HashMap<Vec<u8>, Source> = HashMap::new();
    for r in input {
        let at = Some((r.partition, r.offset));
        sources.insert(
            transform(&r.value),
            Source {
                at,
                value: &r.value,
            },
        );
    }
    let logged: HashSet<&[u8]> = input.iter().map(|r| r.value.as_slice()).collect();
    for v in acked.iter().filter(|v| !logged.contains(v.as_slice())) {
        sources.insert(transform(v), Source { at: None, value: v });
    }
    let mut found: HashMap<&[u8], Vec<(i32, i64)>> = HashMap::new();
    for r in output {
        found
            .entry(r.value.as_slice())
            .or_default()
            .push((r.partition, r.offset));
    }
    for (out_value, &Source { at, value }) in &sources {
        let is_acked = acked.contains(value);
        let places = found
            .get(out_value.as_slice())
            .map_or(&[][..], |v| v.as_slice());
        let from = at.map_or("not in the input log".to_string(), |(p, o)| {
            format!("input {p}:{o}")
        });
        match places.len() {
            0 => {
                report.acked_lost += usize::from(is_acked);
                report.lost.push(format!(
                    "{} ({from}{})",
                    show(value),
                    if is_acked { ", acked" } else { "" }
                ));
            }
            1 => {
                report.exactly_once += 1;
                report.acked_exactly_once += usize::from(is_acked);
            }
            _ => report
                .duplicates
                .push(format!("{} ({from}) at {places:?}", show(out_value))),
        }
    }
    // Per output partition, the input offsets of what it holds must grow with its offsets.
    let mut order: BTreeMap<i32, Vec<(i64, i64)>> = BTreeMap::new();
    for r in output {
        match sources.get(r.value.as_slice()) {
            None => report.phantoms.push(format!(
                "{} at {}:{}",
                show(&r.value),
                r.partition,
                r.offset
            )),
            Some(Source {
                at: Some((p, o)), ..
            }) if *p != r.partition => report.misrouted.push(format!(
                "{} at {}:{} from input {p}:{o}",
                show(&r.value),
                r.partition,
                r.offset
            )),
            Some(Source {
                at: Some((_, o)), ..
            }) => order.entry(r.partition).or_default().push((r.offset, *o)),
            Some(Source { at: None, .. }) => {}
        }
    }
    for (partition, mut v) in order {
        v.sort_unstable();
        for w in v.windows(2) {
            if w[1].1 <= w[0].1 {
                report.reordered.push(format!(
                    "partition {partition}: input offset {} at output offset {} after input offset {} at {}",
                    w[1].1, w[1].0, w[0].1, w[0].0
                ));
            }
        }
    }
    // HashMap order: keep the examples stable from run to run.
    for v in [
        &mut report.lost,
        &mut report.duplicates,
        &mut report.phantoms,
        &mut report.misrouted,
    ] {
        v.sort();
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(seq: u64, acked: Option<i64>) -> Sent {
        Sent {
            producer: 1,
            partition: 0,
            seq,
            value: format!("v{seq}").into_bytes(),
            acked_offset: acked,
            acked_at_ms: acked.map(|_| 0),
        }
    }

    fn found(offset: i64, seq: u64) -> Found {
        Found {
            partition: 0,
            offset,
            value: format!("v{seq}").into_bytes(),
        }
    }

    #[test]
    fn a_clean_history_passes() {
        let s = [
            sent(0, Some(0)),
            sent(1, Some(1)),
            sent(2, None),
            sent(3, None),
        ];
        let r = check(&s, &[found(0, 0), found(1, 1), found(2, 2)]);
        assert!(r.ok(), "{r}");
        assert_eq!((r.sent, r.acked, r.read, r.unacked_present), (4, 2, 3, 1));
    }

    #[test]
    fn every_anomaly_is_reported() {
        let s = [
            sent(0, Some(0)),
            sent(1, Some(1)),
            sent(2, Some(2)),
            sent(3, None),
        ];
        // v1 lost, v2 misplaced and duplicated, v3 before v2, and a stranger.
        let read = [
            found(0, 0),
            found(1, 3),
            found(2, 2),
            found(5, 2),
            Found {
                partition: 0,
                offset: 6,
                value: b"stranger".to_vec(),
            },
        ];
        let r = check(&s, &read);
        assert!(!r.ok());
        assert_eq!(r.lost.len(), 1, "{r}");
        assert!(r.lost[0].starts_with("v1"));
        assert_eq!(
            r.misplaced.len(),
            0,
            "v2 was found first at its acked offset: {r}"
        );
        assert_eq!(r.duplicates.len(), 1, "{r}");
        assert_eq!(
            r.reordered.len(),
            2,
            "v3 before v2, and v2 again after v2: {r}"
        );
        assert_eq!(r.phantoms.len(), 1, "{r}");
        let moved = check(&[sent(0, Some(4))], &[found(3, 0)]);
        assert_eq!(moved.misplaced.len(), 1, "{moved}");
    }

    #[test]
    fn consumed_records_must_be_in_the_final_log() {
        let log = [found(0, 0), found(1, 1)];
        assert!(consumed_outside_log(&[b"v0".to_vec(), b"v1".to_vec()], &log).is_empty());
        assert_eq!(
            consumed_outside_log(&[b"v1".to_vec(), b"v7".to_vec()], &log),
            vec!["v7".to_string()]
        );
    }

    fn upper(v: &[u8]) -> Vec<u8> {
        v.to_ascii_uppercase()
    }

    fn rec(partition: i32, offset: i64, value: &str) -> Found {
        Found {
            partition,
            offset,
            value: value.as_bytes().to_vec(),
        }
    }

    fn values(v: &[&str]) -> HashSet<Vec<u8>> {
        v.iter().map(|s| s.as_bytes().to_vec()).collect()
    }

    #[test]
    fn a_pipeline_output_with_every_input_once_in_order_passes() {
        let input = [rec(0, 0, "a"), rec(0, 1, "b"), rec(1, 0, "c")];
        // Offsets with gaps (transaction markers, aborted batches) are fine.
        let output = [rec(0, 3, "A"), rec(0, 7, "B"), rec(1, 1, "C")];
        let r = check_transformed(&input, &values(&["a", "c"]), &output, upper);
        assert!(r.ok(), "{r}");
        assert_eq!(
            (
                r.input,
                r.acked,
                r.output,
                r.exactly_once,
                r.acked_exactly_once
            ),
            (3, 2, 3, 3, 2)
        );
    }

    #[test]
    fn every_pipeline_anomaly_is_reported() {
        let input = [
            rec(0, 0, "a"),
            rec(0, 1, "b"),
            rec(0, 2, "c"),
            rec(0, 3, "d"),
            rec(1, 0, "e"),
        ];
        // "x" was acknowledged but is not in the input log: lost as well.
        let acked = values(&["a", "b", "x"]);
        // b lost, c twice, d before c, e in the wrong partition, and a stranger.
        let output = [
            rec(0, 0, "A"),
            rec(0, 1, "D"),
            rec(0, 2, "C"),
            rec(0, 3, "C"),
            rec(0, 4, "E"),
            rec(1, 0, "Z"),
        ];
        let r = check_transformed(&input, &acked, &output, upper);
        assert!(!r.ok());
        assert_eq!(r.lost.len(), 2, "{r}");
        assert_eq!(r.acked_lost, 2, "{r}");
        assert!(r.lost[0].starts_with("b (input 0:1, acked"), "{r}");
        assert!(r.lost[1].contains("not in the input log"), "{r}");
        assert_eq!(r.duplicates.len(), 1, "{r}");
        assert_eq!(r.misrouted.len(), 1, "{r}");
        assert_eq!(r.phantoms.len(), 1, "{r}");
        assert_eq!(r.reordered.len(), 2, "c after d, and c again: {r}");
        assert_eq!((r.exactly_once, r.acked_exactly_once), (3, 1), "{r}");
    }
}
