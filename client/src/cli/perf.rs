//! `strom perf produce|consume`, like kafka-producer-perf-test and
//! kafka-consumer-perf-test: a light load generator on raw requests (one batch encoded once
//! and sent again and again, one request in flight), so the figures measure the broker more
//! than the client. Latency is per batch: every record of a batch is sent and acknowledged
//! together.
//!
//! `--idempotent` and `--transactional-id` measure what a producer id, sequence numbers and
//! transactions cost: each batch is the template with its base sequence rewritten and its
//! CRC made again; a transaction is AddPartitionsToTxn, its batches, and EndTxn(commit).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    AddPartitionsToTxnRequest, EndTxnRequest, FetchRequest, InitProducerIdRequest,
    ListOffsetsRequest, MetadataResponse, ProduceRequest, ProducerId, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Compression;

use super::{kafka, CliError, PerfCommand};
use crate::cluster::{topic_name, ClusterClient};
use crate::records::{self, Record};

/// Partition count and leaders of `topic`, failing with the Kafka error when it is missing.
fn leaders(md: &MetadataResponse, topic: &str) -> Result<BTreeMap<i32, i32>, CliError> {
    let t = md
        .topics
        .iter()
        .find(|t| t.name.as_ref().map(|n| n.as_str()) == Some(topic))
        .ok_or_else(|| CliError::Input(format!("no metadata for '{topic}'")))?;
    if t.error_code != 0 {
        return Err(kafka(t.error_code, None, &format!("topic '{topic}'")));
    }
    Ok(t.partitions
        .iter()
        .map(|p| (p.partition_index, p.leader_id.0))
        .collect())
}

fn encode(batch: &[Record], compression: Compression) -> Result<Bytes, CliError> {
    records::encode(batch, compression)
        .map_err(|e| CliError::Input(format!("could not encode records: {e}")))
}

/// The template batch with `base_sequence` in its header and its CRC-32C made again.
fn with_sequence(batch: &Bytes, base_sequence: i32) -> Bytes {
    let mut b = batch.to_vec();
    b[53..57].copy_from_slice(&base_sequence.to_be_bytes());
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    Bytes::from(b)
}

/// A transactional perf producer: its id, producer id and epoch, and its coordinator.
struct PerfTxn {
    id: String,
    producer: (i64, i16),
    coordinator: i32,
}

fn txn_id(id: &str) -> TransactionalId {
    TransactionalId(StrBytes::from_string(id.to_string()))
}

/// InitProducerId for `transactional_id` (None: an idempotent producer id).
async fn init_producer(
    client: &mut ClusterClient,
    transactional_id: Option<&str>,
) -> Result<((i64, i16), i32), CliError> {
    let coordinator = match transactional_id {
        Some(id) => client
            .find_coordinator_of(id, 1)
            .await
            .map_err(|e| CliError::Input(format!("no transaction coordinator: {e}")))?,
        None => -1,
    };
    for _ in 0..100 {
        let req = InitProducerIdRequest::default()
            .with_transactional_id(transactional_id.map(txn_id))
            .with_transaction_timeout_ms(60_000)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
        let r = if coordinator >= 0 {
            client.broker(coordinator).await?.send(req, 3).await?
        } else {
            client.any().await?.send(req, 3).await?
        };
        match r.error_code {
            0 => return Ok(((r.producer_id.0, r.producer_epoch), coordinator)),
            // CONCURRENT_TRANSACTIONS: a previous run's transaction is still being aborted.
            51 => tokio::time::sleep(Duration::from_millis(100)).await,
            code => return Err(kafka(code, None, "InitProducerId")),
        }
    }
    Err(CliError::Input(
        "InitProducerId kept answering CONCURRENT_TRANSACTIONS".into(),
    ))
}

async fn begin_txn(
    client: &mut ClusterClient,
    txn: &PerfTxn,
    topic: &str,
    partition: i32,
) -> Result<(), CliError> {
    let req = AddPartitionsToTxnRequest::default()
        .with_v3_and_below_transactional_id(txn_id(&txn.id))
        .with_v3_and_below_producer_id(ProducerId(txn.producer.0))
        .with_v3_and_below_producer_epoch(txn.producer.1)
        .with_v3_and_below_topics(vec![AddPartitionsToTxnTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(vec![partition])]);
    for _ in 0..100 {
        let r = client
            .broker(txn.coordinator)
            .await?
            .send(req.clone(), 3)
            .await?;
        let code = r
            .results_by_topic_v3_and_below
            .first()
            .and_then(|t| t.results_by_partition.first())
            .map_or(0, |p| p.partition_error_code);
        match code {
            0 => return Ok(()),
            // The previous transaction's markers are still going out.
            51 => tokio::time::sleep(Duration::from_millis(1)).await,
            code => return Err(kafka(code, None, "AddPartitionsToTxn")),
        }
    }
    Err(CliError::Input(
        "AddPartitionsToTxn kept answering CONCURRENT_TRANSACTIONS".into(),
    ))
}

async fn commit_txn(client: &mut ClusterClient, txn: &PerfTxn) -> Result<(), CliError> {
    let req = EndTxnRequest::default()
        .with_transactional_id(txn_id(&txn.id))
        .with_producer_id(ProducerId(txn.producer.0))
        .with_producer_epoch(txn.producer.1)
        .with_committed(true);
    let r = client.broker(txn.coordinator).await?.send(req, 1).await?;
    if r.error_code != 0 {
        return Err(kafka(r.error_code, None, "EndTxn"));
    }
    Ok(())
}

/// Sends one batch to the partition's leader; returns its base offset.
async fn send_batch(
    client: &mut ClusterClient,
    leaders: &BTreeMap<i32, i32>,
    topic: &str,
    partition: i32,
    acks: i16,
    batch: Bytes,
    transactional_id: Option<&str>,
) -> Result<i64, CliError> {
    let leader = *leaders.get(&partition).ok_or_else(|| {
        CliError::Input(format!("partition {partition} of '{topic}' does not exist"))
    })?;
    let req = ProduceRequest::default()
        .with_transactional_id(transactional_id.map(txn_id))
        .with_acks(acks)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic_name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(batch))])]);
    let conn = client.broker(leader).await?;
    if acks == 0 {
        conn.write_request(&req, 9).await?;
        return Ok(-1);
    }
    let r = conn.send(req, 9).await?;
    let p = &r.responses[0].partition_responses[0];
    if p.error_code != 0 {
        return Err(kafka(p.error_code, p.error_message.as_deref(), topic));
    }
    Ok(p.base_offset)
}

async fn list_offset(
    client: &mut ClusterClient,
    leader: i32,
    topic: &str,
    partition: i32,
    ts: i64,
) -> Result<i64, CliError> {
    let req = ListOffsetsRequest::default()
        .with_replica_id((-1).into())
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(partition)
                .with_timestamp(ts)])]);
    let r = client.broker(leader).await?.send(req, 7).await?;
    let p = &r.topics[0].partitions[0];
    if p.error_code != 0 {
        return Err(kafka(p.error_code, None, topic));
    }
    Ok(p.offset)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

pub async fn run(target: &super::Target, cmd: PerfCommand) -> Result<(), CliError> {
    let client = &mut target.cluster();
    match cmd {
        PerfCommand::Produce {
            topic,
            records,
            record_size,
            acks,
            throughput,
            batch_records,
            compression,
            partition,
            idempotent,
            transactional_id,
            transaction_records,
            create,
        } => {
            if create {
                super::ensure_topic(target, &topic).await?;
            }
            let md = client.metadata(Some(&[topic.as_str()])).await?;
            let leaders = leaders(&md, &topic)?;
            let value = Bytes::from(vec![b'x'; record_size]);
            let batch_records = batch_records.max(1);
            let idempotent = idempotent || transactional_id.is_some();
            if idempotent && acks != -1 {
                return Err(CliError::Input(
                    "--idempotent and --transactional-id need --acks -1".into(),
                ));
            }
            let mut template: Vec<Record> = (0..batch_records)
                .map(|i| records::record(i, None, Some(value.clone()), records::now_ms()))
                .collect();
            let mut txn = None;
            if idempotent {
                let (producer, coordinator) =
                    init_producer(client, transactional_id.as_deref()).await?;
                records::idempotent(&mut template, producer.0, producer.1, 0);
                for r in &mut template {
                    r.transactional = transactional_id.is_some();
                }
                txn = transactional_id.map(|id| PerfTxn {
                    id,
                    producer,
                    coordinator,
                });
            }
            let batch = encode(&template, compression.into())?;
            let start = Instant::now();
            let mut latencies_ms = Vec::new();
            let mut sent = 0u64;
            let mut sequence = 0i32;
            let (mut in_txn, mut txn_sent, mut commits) = (false, 0u64, 0u64);
            while sent < records {
                let n = (records - sent).min(batch_records as u64) as usize;
                let b = if n == batch_records {
                    batch.clone()
                } else {
                    encode(&template[..n], compression.into())?
                };
                let b = if idempotent {
                    with_sequence(&b, sequence)
                } else {
                    b
                };
                if let Some(t) = txn.as_ref().filter(|_| !in_txn) {
                    begin_txn(client, t, &topic, partition).await?;
                    in_txn = true;
                }
                let t0 = Instant::now();
                let id = txn.as_ref().map(|t| t.id.as_str());
                send_batch(client, &leaders, &topic, partition, acks, b, id).await?;
                latencies_ms.push(t0.elapsed().as_secs_f64() * 1000.0);
                sent += n as u64;
                sequence = sequence.wrapping_add(n as i32) & i32::MAX;
                txn_sent += n as u64;
                if let Some(t) = txn.as_ref() {
                    if txn_sent >= transaction_records || sent >= records {
                        commit_txn(client, t).await?;
                        commits += 1;
                        in_txn = false;
                        txn_sent = 0;
                    }
                }
                if throughput > 0 {
                    let due = Duration::from_secs_f64(sent as f64 / throughput as f64);
                    if let Some(wait) = due.checked_sub(start.elapsed()) {
                        tokio::time::sleep(wait).await;
                    }
                }
            }
            let secs = start.elapsed().as_secs_f64();
            latencies_ms.sort_by(f64::total_cmp);
            let avg = latencies_ms.iter().sum::<f64>() / latencies_ms.len().max(1) as f64;
            println!(
                "{sent} records sent, {:.0} records/sec ({:.2} MB/sec), {avg:.2} ms avg latency, {:.2} ms p50, {:.2} ms p99, {:.2} ms p99.9, {:.2} ms max (per {batch_records}-record batch)",
                sent as f64 / secs,
                sent as f64 * record_size as f64 / secs / 1e6,
                percentile(&latencies_ms, 0.5),
                percentile(&latencies_ms, 0.99),
                percentile(&latencies_ms, 0.999),
                latencies_ms.last().copied().unwrap_or(0.0),
            );
            if commits > 0 {
                println!("{commits} transactions committed");
            }
        }
        PerfCommand::Consume {
            topic,
            partition,
            records,
            isolation_level,
        } => {
            let isolation = match isolation_level.as_str() {
                "read_uncommitted" => 0,
                "read_committed" => 1,
                other => {
                    return Err(CliError::Input(format!(
                        "--isolation-level is read_uncommitted or read_committed, not '{other}'"
                    )))
                }
            };
            let md = client.metadata(Some(&[topic.as_str()])).await?;
            let leaders = leaders(&md, &topic)?;
            let leader = *leaders
                .get(&partition)
                .ok_or_else(|| CliError::Input(format!("partition {partition} does not exist")))?;
            let mut next = list_offset(client, leader, &topic, partition, -2).await?;
            let (start, mut count, mut bytes) = (Instant::now(), 0u64, 0u64);
            while count < records {
                let req = FetchRequest::default()
                    .with_replica_id((-1).into())
                    .with_max_wait_ms(500)
                    .with_min_bytes(1)
                    .with_max_bytes(64 << 20)
                    .with_isolation_level(isolation)
                    .with_topics(vec![FetchTopic::default()
                        .with_topic(topic_name(&topic))
                        .with_partitions(vec![FetchPartition::default()
                            .with_partition(partition)
                            .with_fetch_offset(next)
                            .with_partition_max_bytes(32 << 20)])]);
                let r = client.broker(leader).await?.send(req, 12).await?;
                let pd = &r.responses[0].partitions[0];
                if pd.error_code != 0 {
                    return Err(kafka(pd.error_code, None, &topic));
                }
                let data = pd.records.clone().unwrap_or_default();
                if data.is_empty() {
                    return Err(CliError::Input(format!(
                        "only {count} of {records} records in the partition"
                    )));
                }
                // Walk batch headers only: base offset, lastOffsetDelta, recordsCount.
                let mut pos = 0;
                while pos + 61 <= data.len() {
                    let h = &data[pos..];
                    let base = i64::from_be_bytes(h[0..8].try_into().unwrap_or_default());
                    let len =
                        i32::from_be_bytes(h[8..12].try_into().unwrap_or_default()) as usize + 12;
                    let delta = i32::from_be_bytes(h[23..27].try_into().unwrap_or_default()) as i64;
                    let n = i32::from_be_bytes(h[57..61].try_into().unwrap_or_default()) as u64;
                    if pos + len > data.len() {
                        break;
                    }
                    // Transaction markers are not records an application sees.
                    let control = h[22] & 0x20 != 0;
                    if !control {
                        count += n;
                    }
                    bytes += len as u64;
                    next = base + delta + 1;
                    pos += len;
                }
            }
            let secs = start.elapsed().as_secs_f64();
            println!(
                "{count} records consumed, {:.0} records/sec ({:.2} MB/sec of batches)",
                count as f64 / secs,
                bytes as f64 / secs / 1e6
            );
        }
    }
    Ok(())
}
