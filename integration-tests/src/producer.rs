//! A small idempotent, acks=all producer for fault-injection tests, written against the raw
//! protocol so every retry is visible: one batch in flight per partition, retried with the
//! same producer id, epoch and sequence numbers until it is acknowledged (as a Kafka
//! idempotent producer does), with the leader looked up again after any error. Every record
//! sent and every acknowledgement lands in a [`Sent`] history for the [`crate::checker`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    FetchRequest, InitProducerIdRequest, MetadataRequest, ProduceRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::RecordBatchDecoder;
use strom_client::{records, Connection};
use tokio::sync::Mutex;

use crate::checker::{Found, Sent};

fn topic_name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

/// CreateTopics through `broker` with `configs`; the topic's error code (0: created).
pub async fn create_topic(
    broker: SocketAddr,
    topic: &str,
    partitions: i32,
    replication_factor: i16,
    configs: &[(&str, &str)],
) -> anyhow::Result<i16> {
    use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
    let mut conn = Connection::connect(broker).await?;
    let r = conn
        .send(
            kafka_protocol::messages::CreateTopicsRequest::default()
                .with_timeout_ms(10_000)
                .with_topics(vec![CreatableTopic::default()
                    .with_name(topic_name(topic))
                    .with_num_partitions(partitions)
                    .with_replication_factor(replication_factor)
                    .with_configs(
                        configs
                            .iter()
                            .map(|(k, v)| {
                                CreatableTopicConfig::default()
                                    .with_name(StrBytes::from_string(k.to_string()))
                                    .with_value(Some(StrBytes::from_string(v.to_string())))
                            })
                            .collect(),
                    )]),
            7,
        )
        .await?;
    Ok(r.topics
        .first()
        .context("no topic in the answer")?
        .error_code)
}

/// Creates `topic` and insists it was created; min.insync.replicas is the smaller of the
/// replication factor and 2 (what a replicated topic is tested with).
pub async fn create_replicated_topic(broker: SocketAddr, topic: &str, partitions: i32, rf: i16) {
    let min_isr = rf.min(2).to_string();
    let code = create_topic(
        broker,
        topic,
        partitions,
        rf,
        &[("min.insync.replicas", &min_isr)],
    )
    .await
    .expect("create topics answered");
    assert_eq!(code, 0, "CreateTopics {topic}");
}

/// Tries each of `brokers` in turn for one connection.
async fn any_connection(brokers: &[SocketAddr]) -> Option<Connection> {
    for b in brokers {
        if let Ok(Ok(c)) =
            tokio::time::timeout(Duration::from_secs(1), Connection::connect(*b)).await
        {
            return Some(c);
        }
    }
    None
}

/// partition -> leader address, as some reachable broker reports it (leaderless partitions
/// are left out).
pub async fn leaders(
    brokers: &[SocketAddr],
    topic: &str,
) -> anyhow::Result<BTreeMap<i32, SocketAddr>> {
    let mut conn = any_connection(brokers)
        .await
        .context("no broker reachable")?;
    let md = tokio::time::timeout(
        Duration::from_secs(3),
        conn.send(
            MetadataRequest::default()
                .with_topics(Some(vec![
                    MetadataRequestTopic::default().with_name(Some(topic_name(topic)))
                ]))
                .with_allow_auto_topic_creation(false),
            12,
        ),
    )
    .await
    .context("metadata timed out")??;
    let addrs: BTreeMap<i32, SocketAddr> = md
        .brokers
        .iter()
        .filter_map(|b| {
            let addr = format!("{}:{}", b.host.as_str(), b.port).parse().ok()?;
            Some((b.node_id.0, addr))
        })
        .collect();
    let t = md.topics.first().context("topic missing")?;
    if t.error_code != 0 {
        bail!("metadata error {}", t.error_code);
    }
    Ok(t.partitions
        .iter()
        .filter_map(|p| Some((p.partition_index, *addrs.get(&p.leader_id.0)?)))
        .collect())
}

/// One record batch of `values` (no keys, timestamps now). With `pid` < 0 it is a plain
/// batch; otherwise an idempotent one from sequence `base_seq`.
pub fn encode(pid: i64, epoch: i16, base_seq: i32, values: &[Vec<u8>]) -> Bytes {
    let now = records::now_ms();
    let mut batch: Vec<_> = values
        .iter()
        .enumerate()
        .map(|(i, v)| records::record(i, None, Some(Bytes::from(v.clone())), now))
        .collect();
    if pid >= 0 {
        records::idempotent(&mut batch, pid, epoch, base_seq);
    }
    records::encode(&batch, records::Compression::None).expect("encode batch")
}

/// A running producer: one task per partition, until [`TestProducer::stop`].
pub struct TestProducer {
    shared: Arc<Shared>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// What the partition tasks share.
#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    /// Sequence errors seen: an idempotent producer must never get one here.
    sequence_errors: AtomicUsize,
    history: Mutex<Vec<Sent>>,
}

/// Settings of a [`TestProducer`].
#[derive(Debug, Clone)]
pub struct ProducerOptions {
    pub producer: u32,
    pub topic: String,
    pub partitions: Vec<i32>,
    pub records_per_batch: usize,
    /// Produce request timeout (how long the leader waits for the ISR).
    pub request_timeout: Duration,
    /// Pause between acknowledged batches.
    pub pace: Duration,
    /// The clock `acked_at_ms` counts from.
    pub started: std::time::Instant,
}

impl TestProducer {
    /// Gets a producer id from any broker and starts sending.
    pub async fn start(brokers: Vec<SocketAddr>, opts: ProducerOptions) -> anyhow::Result<Self> {
        let mut conn = any_connection(&brokers)
            .await
            .context("no broker reachable")?;
        let init = conn
            .send(
                InitProducerIdRequest::default()
                    .with_transactional_id(None)
                    .with_transaction_timeout_ms(60_000)
                    .with_producer_id(kafka_protocol::messages::ProducerId(-1))
                    .with_producer_epoch(-1),
                4,
            )
            .await?;
        if init.error_code != 0 {
            bail!("InitProducerId error {}", init.error_code);
        }
        let (pid, epoch) = (init.producer_id.0, init.producer_epoch);
        let shared = Arc::new(Shared::default());
        let tasks = opts
            .partitions
            .iter()
            .map(|p| {
                tokio::spawn(send_loop(
                    brokers.clone(),
                    opts.clone(),
                    *p,
                    (pid, epoch),
                    shared.clone(),
                ))
            })
            .collect();
        Ok(Self { shared, tasks })
    }

    /// Records acknowledged so far.
    pub async fn acked(&self) -> usize {
        self.shared
            .history
            .lock()
            .await
            .iter()
            .filter(|s| s.acked_offset.is_some())
            .count()
    }

    /// Stops sending new batches, lets the in-flight ones finish (retrying up to `grace`),
    /// and returns the history and the number of sequence errors the brokers answered.
    pub async fn stop(self, grace: Duration) -> (Vec<Sent>, usize) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let aborts: Vec<_> = self.tasks.iter().map(|t| t.abort_handle()).collect();
        let _ = tokio::time::timeout(grace, async {
            for t in self.tasks {
                let _ = t.await;
            }
        })
        .await;
        for a in aborts {
            a.abort();
        }
        let h = self.shared.history.lock().await.clone();
        (h, self.shared.sequence_errors.load(Ordering::SeqCst))
    }
}

async fn send_loop(
    brokers: Vec<SocketAddr>,
    opts: ProducerOptions,
    partition: i32,
    (pid, epoch): (i64, i16),
    shared: Arc<Shared>,
) {
    let (stop, sequence_errors, history) = (&shared.stop, &shared.sequence_errors, &shared.history);
    let mut seq: u64 = 0;
    let started = opts.started;
    let mut conn: Option<(SocketAddr, Connection)> = None;
    while !stop.load(Ordering::SeqCst) {
        let first = seq;
        let values: Vec<Vec<u8>> = (0..opts.records_per_batch as u64)
            .map(|i| format!("p{}-{}-{}", opts.producer, partition, first + i).into_bytes())
            .collect();
        {
            let mut h = history.lock().await;
            for (i, v) in values.iter().enumerate() {
                h.push(Sent {
                    producer: opts.producer,
                    partition,
                    seq: first + i as u64,
                    value: v.clone(),
                    acked_offset: None,
                    acked_at_ms: None,
                });
            }
        }
        let batch = encode(pid, epoch, first as i32, &values);
        // Retry this very batch (same sequences) until acknowledged, or give up once
        // stopping and the grace period ends (then it stays unacknowledged).
        loop {
            match send_once(&brokers, &opts, partition, &batch, &mut conn).await {
                Ok(base) => {
                    let mut h = history.lock().await;
                    for s in h.iter_mut().filter(|s| {
                        s.producer == opts.producer
                            && s.partition == partition
                            && s.seq >= first
                            && s.seq < first + values.len() as u64
                    }) {
                        s.acked_offset = Some(base + (s.seq - first) as i64);
                        s.acked_at_ms = Some(started.elapsed().as_millis() as u64);
                    }
                    break;
                }
                Err(e) => {
                    if e.to_string().contains("sequence error") {
                        sequence_errors.fetch_add(1, Ordering::SeqCst);
                    }
                    conn = None;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        seq += values.len() as u64;
        if !opts.pace.is_zero() {
            tokio::time::sleep(opts.pace).await;
        }
    }
}

/// Sends `batch` to the partition's leader; the base offset on success.
async fn send_once(
    brokers: &[SocketAddr],
    opts: &ProducerOptions,
    partition: i32,
    batch: &Bytes,
    conn: &mut Option<(SocketAddr, Connection)>,
) -> anyhow::Result<i64> {
    if conn.is_none() {
        let leader = *leaders(brokers, &opts.topic)
            .await?
            .get(&partition)
            .context("no leader")?;
        let c = tokio::time::timeout(Duration::from_secs(1), Connection::connect(leader))
            .await
            .context("connect timed out")??;
        *conn = Some((leader, c));
    }
    let (_, c) = conn.as_mut().expect("connected");
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(opts.request_timeout.as_millis() as i32)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic_name(&opts.topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(batch.clone()))])]);
    let resp = tokio::time::timeout(
        opts.request_timeout + Duration::from_secs(2),
        c.send(req, 9),
    )
    .await
    .context("produce timed out")??;
    let p = &resp.responses[0].partition_responses[0];
    match p.error_code {
        0 => Ok(p.base_offset),
        // Sequence errors mean the broker lost track of this producer: never retried into
        // success here, so the checker sees the batch as unacknowledged.
        45 | 59 => bail!("fatal sequence error {}", p.error_code),
        e => bail!("produce error {e}"),
    }
}

/// Reads every record of `partitions` from offset 0 to the high watermark, from the leaders.
pub async fn read_all(
    brokers: &[SocketAddr],
    topic: &str,
    partitions: &[i32],
) -> anyhow::Result<Vec<Found>> {
    let mut out = Vec::new();
    for p in partitions {
        let leader = *leaders(brokers, topic)
            .await?
            .get(p)
            .context("no leader for the final read")?;
        let mut conn = Connection::connect(leader).await?;
        let mut offset = 0i64;
        loop {
            let req = FetchRequest::default()
                .with_replica_id(kafka_protocol::messages::BrokerId(-1))
                .with_max_wait_ms(0)
                .with_min_bytes(0)
                .with_max_bytes(16 << 20)
                .with_session_epoch(-1)
                .with_topics(vec![FetchTopic::default()
                    .with_topic(topic_name(topic))
                    .with_partitions(vec![FetchPartition::default()
                        .with_partition(*p)
                        .with_fetch_offset(offset)
                        .with_current_leader_epoch(-1)
                        .with_partition_max_bytes(8 << 20)])]);
            let resp = conn.send(req, 12).await?;
            let pd = &resp.responses[0].partitions[0];
            if pd.error_code != 0 {
                bail!(
                    "fetch of partition {p} at {offset}: error {}",
                    pd.error_code
                );
            }
            let mut records = pd.records.clone().unwrap_or_default();
            if records.is_empty() {
                if offset >= pd.high_watermark {
                    break;
                }
                bail!(
                    "empty fetch at {offset} below the high watermark {}",
                    pd.high_watermark
                );
            }
            for set in RecordBatchDecoder::decode_all(&mut records)? {
                for r in set.records {
                    if r.offset < offset {
                        continue;
                    }
                    offset = r.offset + 1;
                    out.push(Found {
                        partition: *p,
                        offset: r.offset,
                        value: r.value.map(|v| v.to_vec()).unwrap_or_default(),
                    });
                }
            }
        }
    }
    Ok(out)
}

/// The sum of `group`'s committed offsets on the partitions of `topic` (0 while it has
/// none, or while the coordinator cannot be reached).
pub async fn committed_sum(bootstrap: &str, group: &str, topic: &str) -> i64 {
    strom_client::admin::Admin::new(bootstrap)
        .list_group_offsets(group)
        .await
        .map(|m| {
            m.iter()
                .filter(|(tp, _)| tp.topic == topic)
                .map(|(_, o)| o.offset)
                .sum()
        })
        .unwrap_or(0)
}
