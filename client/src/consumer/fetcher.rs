//! Fetching: one Fetch request in flight per leader broker, each owning its connection, so a
//! long poll on an idle broker never delays records from a busy one. Answers are checked
//! against the partition's position when they arrive: a seek, a revocation or a new
//! assignment made while a request was out simply discards what it brought.
//!
//! Record batches are walked by their headers (base offset, length, last offset delta) and
//! decoded one at a time, so a batch cut short by the byte limit is left for the next fetch
//! and the position can move past batches whose records compaction removed.
//!
//! Transactions: control batches (markers) are never handed out; under read_committed the
//! broker lists the aborted transactions in range, and a transactional batch of a producer
//! whose aborted transaction has begun by then is skipped until that producer's ABORT marker
//! (the Java consumer's algorithm).

use std::collections::HashSet;

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::RecordBatchDecoder;

use super::ConsumerRecord;
use crate::cluster::topic_name;
use crate::{ClientError, Connection, TopicPartition};

/// One partition in a fetch request: where it reads from.
#[derive(Debug, Clone)]
pub(crate) struct FetchTarget {
    pub tp: TopicPartition,
    pub offset: i64,
}

/// A finished fetch: the broker, its connection back (None when it broke), and the answer.
pub(crate) struct Fetched {
    pub broker: i32,
    pub conn: Option<Connection>,
    pub targets: Vec<FetchTarget>,
    pub result: Result<FetchResponse, ClientError>,
}

/// Limits of one fetch, from the consumer's config.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FetchLimits {
    pub max_wait_ms: i32,
    pub min_bytes: i32,
    pub max_bytes: i32,
    pub partition_max_bytes: i32,
    /// 0 read_uncommitted, 1 read_committed.
    pub isolation_level: i8,
}

/// A fetch's limits and the consumer's rack (`client.rack`, sent as v11+'s `rack_id`).
pub(crate) fn request_in_rack(
    targets: &[FetchTarget],
    limits: FetchLimits,
    rack: Option<&str>,
) -> FetchRequest {
    request(targets, limits).with_rack_id(StrBytes::from_string(rack.unwrap_or_default().into()))
}

pub(crate) fn request(targets: &[FetchTarget], limits: FetchLimits) -> FetchRequest {
    let mut topics: Vec<FetchTopic> = Vec::new();
    for t in targets {
        let partition = FetchPartition::default()
            .with_partition(t.tp.partition)
            .with_fetch_offset(t.offset)
            .with_current_leader_epoch(-1)
            .with_log_start_offset(-1)
            .with_partition_max_bytes(limits.partition_max_bytes);
        match topics.iter_mut().find(|ft| ft.topic.as_str() == t.tp.topic) {
            Some(ft) => ft.partitions.push(partition),
            None => topics.push(
                FetchTopic::default()
                    .with_topic(topic_name(&t.tp.topic))
                    .with_partitions(vec![partition]),
            ),
        }
    }
    FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(limits.max_wait_ms)
        .with_min_bytes(limits.min_bytes)
        .with_max_bytes(limits.max_bytes)
        .with_isolation_level(limits.isolation_level)
        .with_topics(topics)
}

/// Sends one fetch on `conn` and hands everything back for the consumer to sort out.
pub(crate) async fn fetch(
    broker: i32,
    mut conn: Connection,
    targets: Vec<FetchTarget>,
    limits: FetchLimits,
    rack: Option<String>,
) -> Fetched {
    let req = request_in_rack(&targets, limits, rack.as_deref());
    // The broker holds the request up to max_wait; allow it that and a margin.
    let patience = std::time::Duration::from_millis(limits.max_wait_ms.max(0) as u64 + 30_000);
    let result = tokio::time::timeout(patience, conn.send(req, 12))
        .await
        .unwrap_or(Err(ClientError::Closed));
    Fetched {
        broker,
        // A connection that failed or timed out mid-request is out of step: dropped.
        conn: result.is_ok().then_some(conn),
        targets,
        result,
    }
}

/// The records of one partition's answer at or after `from`, and the offset to fetch next
/// (past the last whole batch, even when compaction left its tail empty). `aborted` is the
/// answer's aborted transactions (producer id, first offset): their records are dropped.
pub(crate) fn records(
    tp: &TopicPartition,
    data: &Bytes,
    from: i64,
    aborted: &[(i64, i64)],
) -> Result<(Vec<ConsumerRecord>, i64), String> {
    let mut pending_aborts: Vec<(i64, i64)> = aborted.to_vec();
    // Popped from the back in first-offset order.
    pending_aborts.sort_by_key(|(_, first)| std::cmp::Reverse(*first));
    let mut aborting: HashSet<i64> = HashSet::new();
    let mut out = Vec::new();
    let mut next = from;
    let mut pos = 0usize;
    // Base offset (8), length (4), leader epoch (4), magic (1), crc (4), attributes (2),
    // last offset delta (4) ... records count at 57..61: a v2 batch header is 61 bytes.
    while pos + 61 <= data.len() {
        let h = &data[pos..];
        let base = i64::from_be_bytes(h[0..8].try_into().map_err(|_| "short header")?);
        let len = i32::from_be_bytes(h[8..12].try_into().map_err(|_| "short header")?);
        if len < 49 {
            return Err(format!("batch at offset {base} has length {len}"));
        }
        let total = len as usize + 12;
        if pos + total > data.len() {
            break; // cut short by the size limit: the next fetch gets it whole
        }
        let magic = h[16];
        if magic != 2 {
            return Err(format!(
                "batch at offset {base} has magic {magic}, only v2 is read"
            ));
        }
        let last_delta = i32::from_be_bytes(h[23..27].try_into().map_err(|_| "short header")?);
        let batch_next = base + last_delta as i64 + 1;
        if batch_next > from {
            let mut slice = data.slice(pos..pos + total);
            let set = RecordBatchDecoder::decode(&mut slice)
                .map_err(|e| format!("undecodable batch at offset {base}: {e}"))?;
            // Aborted transactions that have begun by the end of this batch.
            while pending_aborts
                .last()
                .is_some_and(|(_, first)| *first < batch_next)
            {
                if let Some((pid, _)) = pending_aborts.pop() {
                    aborting.insert(pid);
                }
            }
            let (transactional, control, pid) =
                set.records.first().map_or((false, false, -1), |r| {
                    (r.transactional, r.control, r.producer_id)
                });
            if control {
                // An ABORT marker ends that producer's aborted transaction.
                let abort = set
                    .records
                    .first()
                    .and_then(|r| r.key.as_deref())
                    .is_some_and(|k| k.len() >= 4 && i16::from_be_bytes([k[2], k[3]]) == 0);
                if abort {
                    aborting.remove(&pid);
                }
            }
            let skip = transactional && !control && aborting.contains(&pid);
            for r in set.records.into_iter().filter(|_| !skip) {
                if r.offset < from || r.control {
                    continue;
                }
                out.push(ConsumerRecord {
                    topic: tp.topic.clone(),
                    partition: tp.partition,
                    offset: r.offset,
                    timestamp: r.timestamp,
                    key: r.key,
                    value: r.value,
                    headers: r
                        .headers
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), v))
                        .collect(),
                    leader_epoch: r.partition_leader_epoch,
                });
            }
        }
        next = next.max(batch_next);
        pos += total;
    }
    Ok((out, next))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{self, Compression};

    fn batch(base: i64, values: &[&str], compression: Compression) -> Bytes {
        let recs: Vec<_> = values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let mut r = records::record(
                    i,
                    Some(Bytes::from(format!("k{i}"))),
                    Some(Bytes::from(v.to_string())),
                    1000 + i as i64,
                );
                r.offset = base + i as i64;
                r
            })
            .collect();
        records::encode(&recs, compression).expect("encode")
    }

    #[test]
    fn reads_from_the_position_across_batches() {
        let tp = TopicPartition::new("t", 0);
        let mut data = batch(0, &["a", "b", "c"], Compression::None).to_vec();
        data.extend_from_slice(&batch(3, &["d", "e"], Compression::Zstd));
        let (recs, next) = records(&tp, &Bytes::from(data), 1, &[]).expect("records");
        let values: Vec<_> = recs
            .iter()
            .map(|r| r.value.clone().unwrap_or_default())
            .collect();
        assert_eq!(values, ["b", "c", "d", "e"]);
        assert_eq!(recs[0].offset, 1);
        assert_eq!(recs[0].key.as_deref(), Some(&b"k1"[..]));
        assert_eq!(next, 5);
    }

    #[test]
    fn a_batch_cut_short_waits_for_the_next_fetch() {
        let tp = TopicPartition::new("t", 0);
        let mut data = batch(0, &["a", "b"], Compression::None).to_vec();
        let second = batch(2, &["c"], Compression::None);
        data.extend_from_slice(&second[..second.len() - 5]);
        let (recs, next) = records(&tp, &Bytes::from(data), 0, &[]).expect("records");
        assert_eq!(recs.len(), 2);
        assert_eq!(next, 2);
    }

    #[test]
    fn the_position_moves_past_a_batch_compaction_emptied_at_its_end() {
        // Offsets 10..=14 in the batch header, records left only at 10 and 11.
        let tp = TopicPartition::new("t", 0);
        let mut recs: Vec<_> = (0..5)
            .map(|i| {
                let mut r = records::record(i, None, Some(Bytes::from(format!("v{i}"))), 0);
                r.offset = 10 + i as i64;
                r
            })
            .collect();
        let full = records::encode(&recs, Compression::None).expect("encode");
        recs.truncate(2);
        // What compaction writes: the full batch's lastOffsetDelta over fewer records (and
        // the CRC, which covers everything from the attributes on, made again).
        let mut short = records::encode(&recs, Compression::None)
            .expect("encode")
            .to_vec();
        short[23..27].copy_from_slice(&full[23..27]);
        let crc = crc32c::crc32c(&short[21..]);
        short[17..21].copy_from_slice(&crc.to_be_bytes());
        let (got, next) = records(&tp, &Bytes::from(short), 12, &[]).expect("records");
        assert!(got.is_empty());
        assert_eq!(next, 15);
    }

    /// A batch of transactional records (or, with `marker`, a control batch) of `pid`.
    fn txn_batch(base: i64, pid: i64, values: &[&str], marker: Option<bool>) -> Vec<u8> {
        let recs: Vec<_> = values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let mut r = records::record(i, None, Some(Bytes::from(v.to_string())), 0);
                r.offset = base + i as i64;
                r.producer_id = pid;
                r.producer_epoch = 0;
                r.transactional = true;
                if let Some(commit) = marker {
                    r.control = true;
                    r.key = Some(Bytes::from(vec![0, 0, 0, commit as u8]));
                    r.sequence = -1;
                }
                r
            })
            .collect();
        records::encode(&recs, Compression::None)
            .expect("encode")
            .to_vec()
    }

    #[test]
    fn aborted_transactions_and_markers_never_reach_the_application() {
        let tp = TopicPartition::new("t", 0);
        // 0-1 producer 7 (aborted at 4), 2 producer 8 (committed at 5), 3 plain,
        // 4 abort marker of 7, 5 commit marker of 8, 6 producer 7 again (committed at 7).
        let mut data = txn_batch(0, 7, &["a0", "a1"], None);
        data.extend(txn_batch(2, 8, &["c2"], None));
        data.extend(batch(3, &["p3"], Compression::None));
        data.extend(txn_batch(4, 7, &["x"], Some(false)));
        data.extend(txn_batch(5, 8, &["x"], Some(true)));
        data.extend(txn_batch(6, 7, &["c6"], None));
        data.extend(txn_batch(7, 7, &["x"], Some(true)));
        let data = Bytes::from(data);
        let values = |recs: Vec<ConsumerRecord>| -> Vec<Bytes> {
            recs.into_iter().filter_map(|r| r.value).collect()
        };
        let (committed, next) = records(&tp, &data, 0, &[(7, 0)]).expect("records");
        assert_eq!(values(committed), ["c2", "p3", "c6"]);
        assert_eq!(next, 8);
        // read_uncommitted (no aborted list): every data record, still no markers.
        let (all, _) = records(&tp, &data, 0, &[]).expect("records");
        assert_eq!(values(all), ["a0", "a1", "c2", "p3", "c6"]);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let tp = TopicPartition::new("t", 0);
        let mut data = vec![0u8; 70];
        data[11] = 10; // length 10: too short for a batch
        assert!(records(&tp, &Bytes::from(data), 0, &[]).is_err());
    }

    #[test]
    fn requests_group_partitions_by_topic() {
        let targets = vec![
            FetchTarget {
                tp: TopicPartition::new("a", 0),
                offset: 5,
            },
            FetchTarget {
                tp: TopicPartition::new("b", 1),
                offset: 7,
            },
            FetchTarget {
                tp: TopicPartition::new("a", 2),
                offset: 9,
            },
        ];
        let limits = FetchLimits {
            max_wait_ms: 100,
            min_bytes: 1,
            max_bytes: 1 << 20,
            partition_max_bytes: 1 << 16,
            isolation_level: 1,
        };
        let r = request(&targets, limits);
        assert_eq!(r.topics.len(), 2);
        assert_eq!(r.topics[0].partitions.len(), 2);
        assert_eq!(r.topics[0].partitions[1].fetch_offset, 9);
        assert_eq!(r.max_wait_ms, 100);
    }
}
