//! The producer: records batched per partition (`linger`, `batch_size`), compressed, sent to
//! each partition's leader with the chosen acks, retried with backoff after retriable errors
//! (refreshing the leader), idempotent by default, each send answered by a delivery future
//! carrying the record's partition and offset.
//!
//! Partitioning is the Java client's: an explicit partition wins, a keyed record goes to
//! `murmur2(key) % partitions` ([`crate::partitioner`]), and keyless records stick to one
//! partition until its batch is sent (KIP-480).
//!
//! Inside, every partition has a worker task that owns its queue, its connection to the
//! leader, its idempotence sequence, and one request in flight: order per partition holds
//! through retries.
//!
//! ```no_run
//! # async fn demo() -> Result<(), strom_client::producer::ProducerError> {
//! use strom_client::producer::{Producer, ProducerConfig, ProducerRecord};
//! let producer = Producer::new(ProducerConfig::new("127.0.0.1:9092")).await?;
//! let delivery = producer
//!     .send(ProducerRecord::new("orders", "order-1 placed").with_key("order-1"))
//!     .await?;
//! let meta = delivery.await?;
//! println!("written to {}-{} at offset {}", meta.topic, meta.partition, meta.offset);
//! producer.close().await;
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::records::{self, Compression, Record};
use bytes::Bytes;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{InitProducerIdRequest, ProduceRequest, ProducerId};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use tokio::sync::{mpsc, oneshot, Mutex};
use tokio::time::Instant;
use tracing::debug;

use crate::cluster::{topic_name, ClusterClient};
use crate::{ClientError, Connection};

/// Producer settings, with Kafka's names and defaults where they apply.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// `host:port[,host:port...]`.
    pub bootstrap: String,
    /// `acks`: 0, 1 or -1 (all). Idempotence needs -1.
    pub acks: i16,
    /// `linger.ms`: how long a batch waits for more records.
    pub linger: Duration,
    /// `batch.size`: a batch is sent once it holds this many bytes of values and keys.
    pub batch_size: usize,
    /// A batch is also sent once it holds this many records (the CLI's `--batch-records`).
    pub max_batch_records: usize,
    pub compression: Compression,
    /// `enable.idempotence`: producer id and sequence numbers, so retries never duplicate.
    pub idempotence: bool,
    /// `retry.backoff.ms`.
    pub retry_backoff: Duration,
    /// `delivery.timeout.ms`: a record not acknowledged by then fails.
    pub delivery_timeout: Duration,
    /// `request.timeout.ms`: also the broker's wait for the ISR with acks=all.
    pub request_timeout: Duration,
}

impl ProducerConfig {
    pub fn new(bootstrap: impl Into<String>) -> Self {
        Self {
            bootstrap: bootstrap.into(),
            acks: -1,
            linger: Duration::from_millis(5),
            batch_size: 16 * 1024,
            max_batch_records: usize::MAX,
            compression: Compression::None,
            idempotence: true,
            retry_backoff: Duration::from_millis(100),
            delivery_timeout: Duration::from_secs(120),
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// One record to send.
#[derive(Debug, Clone, Default)]
pub struct ProducerRecord {
    pub topic: String,
    pub partition: Option<i32>,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(String, Option<Bytes>)>,
    /// Create time in ms since the epoch; now when None.
    pub timestamp: Option<i64>,
}

impl ProducerRecord {
    pub fn new(topic: impl Into<String>, value: impl Into<Bytes>) -> Self {
        Self {
            topic: topic.into(),
            value: Some(value.into()),
            ..Self::default()
        }
    }

    pub fn with_key(mut self, key: impl Into<Bytes>) -> Self {
        self.key = Some(key.into());
        self
    }

    pub fn with_partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }

    pub fn with_header(mut self, key: impl Into<String>, value: impl Into<Bytes>) -> Self {
        self.headers.push((key.into(), Some(value.into())));
        self
    }

    pub fn with_timestamp(mut self, ms: i64) -> Self {
        self.timestamp = Some(ms);
        self
    }

    fn size(&self) -> usize {
        self.key.as_ref().map_or(0, Bytes::len) + self.value.as_ref().map_or(0, Bytes::len) + 16
    }
}

/// Where a record was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMetadata {
    pub topic: String,
    pub partition: i32,
    /// -1 with acks=0 (the broker does not say).
    pub offset: i64,
    pub timestamp: i64,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ProducerError {
    #[error("cannot reach the cluster: {0}")]
    Connection(String),
    #[error("topic '{0}' does not exist")]
    UnknownTopic(String),
    #[error("partition {partition} of '{topic}' does not exist")]
    UnknownPartition { topic: String, partition: i32 },
    #[error("the broker refused the batch: {name} ({code}){}", message.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    Broker {
        code: i16,
        name: String,
        message: Option<String>,
    },
    #[error("not acknowledged within the delivery timeout (last error: {0})")]
    Timeout(String),
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("the producer is closed")]
    Closed,
}

impl From<ClientError> for ProducerError {
    fn from(e: ClientError) -> Self {
        ProducerError::Connection(e.to_string())
    }
}

/// Resolves when the record is acknowledged (or has failed for good).
pub struct DeliveryFuture {
    rx: oneshot::Receiver<Result<RecordMetadata, ProducerError>>,
}

impl Future for DeliveryFuture {
    type Output = Result<RecordMetadata, ProducerError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(ProducerError::Closed)))
    }
}

type Delivery = oneshot::Sender<Result<RecordMetadata, ProducerError>>;

enum Work {
    Record(ProducerRecord, Delivery, Instant),
    Flush(oneshot::Sender<()>),
}

/// What every partition worker shares: metadata, and the producer's identity.
struct Shared {
    config: ProducerConfig,
    cluster: Mutex<ClusterClient>,
    /// Producer id and epoch, when idempotent.
    identity: Option<(i64, i16)>,
    /// Partition count by topic, and the sticky partition for keyless records.
    topics: std::sync::Mutex<HashMap<String, (i32, i32)>>,
}

impl Shared {
    /// A batch of `partition` went out: keyless records of `topic` move to the next
    /// partition if they were sticking to this one (KIP-480).
    fn batch_sent(&self, topic: &str, partition: i32) {
        if let Some((n, sticky)) = self
            .topics
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(topic)
        {
            if *sticky == partition {
                *sticky = (*sticky + 1) % *n;
            }
        }
    }

    fn topic(&self, topic: &str) -> Option<(i32, i32)> {
        self.topics
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(topic)
            .copied()
    }
}

/// An async Kafka producer. Cheap to share behind an `Arc`; `send` takes `&self`.
pub struct Producer {
    shared: Arc<Shared>,
    workers: Mutex<HashMap<(String, i32), mpsc::Sender<Work>>>,
}

impl Producer {
    /// Connects to the cluster and, when idempotent, gets a producer id (InitProducerId).
    pub async fn new(config: ProducerConfig) -> Result<Self, ProducerError> {
        if config.idempotence && config.acks != -1 {
            return Err(ProducerError::Config(
                "idempotence needs acks=-1 (all)".into(),
            ));
        }
        let mut cluster = ClusterClient::new(&config.bootstrap);
        let identity = if config.idempotence {
            let r = cluster
                .any()
                .await?
                .send(
                    InitProducerIdRequest::default()
                        .with_transactional_id(None)
                        .with_transaction_timeout_ms(60_000)
                        .with_producer_id(ProducerId(-1))
                        .with_producer_epoch(-1),
                    4,
                )
                .await?;
            if r.error_code != 0 {
                return Err(broker_error(r.error_code, None));
            }
            Some((r.producer_id.0, r.producer_epoch))
        } else {
            None
        };
        Ok(Self {
            shared: Arc::new(Shared {
                config,
                cluster: Mutex::new(cluster),
                identity,
                topics: std::sync::Mutex::new(HashMap::new()),
            }),
            workers: Mutex::new(HashMap::new()),
        })
    }

    /// The producer id and epoch (idempotent producers).
    pub fn identity(&self) -> Option<(i64, i16)> {
        self.shared.identity
    }

    /// Queues `record`; the returned future resolves once it is acknowledged. Errors here
    /// are immediate (unknown topic or partition, closed producer).
    pub async fn send(&self, record: ProducerRecord) -> Result<DeliveryFuture, ProducerError> {
        let count = self.partition_count(&record.topic).await?;
        let partition = match (record.partition, &record.key) {
            (Some(p), _) if p < 0 || p >= count => {
                return Err(ProducerError::UnknownPartition {
                    topic: record.topic.clone(),
                    partition: p,
                })
            }
            (Some(p), _) => p,
            (None, Some(k)) => crate::partitioner::partition_for_key(k, count),
            (None, None) => self.shared.topic(&record.topic).map_or(0, |t| t.1),
        };
        let sender = self.worker(&record.topic, partition).await;
        let (tx, rx) = oneshot::channel();
        sender
            .send(Work::Record(record, tx, Instant::now()))
            .await
            .map_err(|_| ProducerError::Closed)?;
        Ok(DeliveryFuture { rx })
    }

    /// Sends everything queued now and waits until it is acknowledged or failed.
    pub async fn flush(&self) {
        let workers: Vec<mpsc::Sender<Work>> =
            self.workers.lock().await.values().cloned().collect();
        let mut waits = Vec::new();
        for w in workers {
            let (tx, rx) = oneshot::channel();
            if w.send(Work::Flush(tx)).await.is_ok() {
                waits.push(rx);
            }
        }
        for rx in waits {
            let _ = rx.await;
        }
    }

    /// Flushes, then stops the workers.
    pub async fn close(self) {
        self.flush().await;
        self.workers.lock().await.clear();
    }

    async fn partition_count(&self, topic: &str) -> Result<i32, ProducerError> {
        if let Some((n, _)) = self.shared.topic(topic) {
            return Ok(n);
        }
        let md = self
            .shared
            .cluster
            .lock()
            .await
            .metadata(Some(&[topic]))
            .await?;
        let t = md
            .topics
            .iter()
            .find(|t| t.name.as_ref().map(|n| n.as_str()) == Some(topic))
            .ok_or_else(|| ProducerError::UnknownTopic(topic.to_string()))?;
        if t.error_code != 0 || t.partitions.is_empty() {
            return Err(ProducerError::UnknownTopic(topic.to_string()));
        }
        let n = t.partitions.len() as i32;
        let sticky = (std::process::id() as i32).rem_euclid(n);
        self.shared
            .topics
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(topic.to_string(), (n, sticky));
        Ok(n)
    }

    async fn worker(&self, topic: &str, partition: i32) -> mpsc::Sender<Work> {
        let mut workers = self.workers.lock().await;
        let key = (topic.to_string(), partition);
        if let Some(w) = workers.get(&key).filter(|w| !w.is_closed()) {
            return w.clone();
        }
        let (tx, rx) = mpsc::channel(10_000);
        tokio::spawn(partition_worker(
            self.shared.clone(),
            topic.to_string(),
            partition,
            rx,
        ));
        workers.insert(key, tx.clone());
        tx
    }
}

fn broker_error(code: i16, message: Option<String>) -> ProducerError {
    ProducerError::Broker {
        code,
        name: crate::error_name(code),
        message,
    }
}

/// Errors after which the same batch is sent again (to a possibly new leader).
fn retriable(code: i16) -> bool {
    matches!(
        ResponseError::try_from_code(code),
        Some(
            ResponseError::NotLeaderOrFollower
                | ResponseError::LeaderNotAvailable
                | ResponseError::RequestTimedOut
                | ResponseError::NotEnoughReplicas
                | ResponseError::NotEnoughReplicasAfterAppend
                | ResponseError::UnknownTopicOrPartition
                | ResponseError::FencedLeaderEpoch
                | ResponseError::UnknownLeaderEpoch
                | ResponseError::KafkaStorageError
                | ResponseError::NetworkException
                | ResponseError::CorruptMessage
        )
    )
}

struct Pending {
    record: ProducerRecord,
    delivery: Delivery,
    enqueued: Instant,
}

/// Files what a partition worker received: a record into the queue, a flush request, or
/// (None) the producer going away.
fn accept(
    work: Option<Work>,
    queue: &mut Vec<Pending>,
    bytes: &mut usize,
    flushes: &mut Vec<oneshot::Sender<()>>,
    open: &mut bool,
) {
    match work {
        Some(Work::Record(record, delivery, enqueued)) => {
            *bytes += record.size();
            queue.push(Pending {
                record,
                delivery,
                enqueued,
            });
        }
        Some(Work::Flush(done)) => flushes.push(done),
        None => *open = false,
    }
}

/// Owns one partition: queue, leader connection, sequence, one batch in flight.
async fn partition_worker(
    shared: Arc<Shared>,
    topic: String,
    partition: i32,
    mut rx: mpsc::Receiver<Work>,
) {
    let config = &shared.config;
    let mut queue: Vec<Pending> = Vec::new();
    let mut bytes = 0usize;
    let mut flushes: Vec<oneshot::Sender<()>> = Vec::new();
    let mut leader: Option<Connection> = None;
    let mut sequence: i32 = 0;
    let mut open = true;
    loop {
        // Take in what is already queued (up to a full batch) before deciding: records that
        // waited in the channel while the previous batch was out belong in this one, and
        // their linger has long passed, so one at a time they would each go out alone.
        while open && bytes < config.batch_size && queue.len() < config.max_batch_records {
            let work = match rx.try_recv() {
                Ok(w) => Some(w),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => None,
            };
            accept(work, &mut queue, &mut bytes, &mut flushes, &mut open);
        }
        // Collect until the batch is full, lingered long enough, flushed, or closed.
        let deadline = queue.first().map(|p| p.enqueued + config.linger);
        let ready = bytes >= config.batch_size
            || queue.len() >= config.max_batch_records
            || !flushes.is_empty()
            || !open
            || deadline.is_some_and(|d| Instant::now() >= d);
        if !ready || queue.is_empty() {
            if !open && queue.is_empty() {
                for f in flushes.drain(..) {
                    let _ = f.send(());
                }
                return;
            }
            if queue.is_empty() {
                for f in flushes.drain(..) {
                    let _ = f.send(());
                }
            }
            let wait = deadline.map_or(Duration::from_secs(3600), |d| {
                d.saturating_duration_since(Instant::now())
            });
            tokio::select! {
                w = rx.recv() => accept(w, &mut queue, &mut bytes, &mut flushes, &mut open),
                _ = tokio::time::sleep(wait) => {}
            }
            continue;
        }
        let batch: Vec<Pending> = std::mem::take(&mut queue);
        bytes = 0;
        shared.batch_sent(&topic, partition);
        let base_seq = sequence;
        let encoded = match encode(&batch, shared.identity, base_seq, config.compression) {
            Ok(b) => b,
            Err(e) => {
                for p in batch {
                    let _ = p.delivery.send(Err(e.clone()));
                }
                continue;
            }
        };
        let outcome =
            send_with_retries(&shared, &topic, partition, &encoded, &batch, &mut leader).await;
        match outcome {
            Ok(base_offset) => {
                sequence = ((sequence as i64 + batch.len() as i64) % (i32::MAX as i64 + 1)) as i32;
                for (i, p) in batch.into_iter().enumerate() {
                    let _ = p.delivery.send(Ok(RecordMetadata {
                        topic: topic.clone(),
                        partition,
                        offset: if base_offset < 0 {
                            -1
                        } else {
                            base_offset + i as i64
                        },
                        timestamp: p.record.timestamp.unwrap_or(-1),
                    }));
                }
            }
            Err(e) => {
                // The sequence did not advance: with idempotence, later batches would be out
                // of order, so an idempotent partition fails what is queued too (as Kafka's
                // producer does after a fatal error on a partition).
                for p in batch {
                    let _ = p.delivery.send(Err(e.clone()));
                }
                if shared.identity.is_some() {
                    for p in queue.drain(..) {
                        let _ = p.delivery.send(Err(e.clone()));
                    }
                    bytes = 0;
                }
            }
        }
    }
}

fn encode(
    batch: &[Pending],
    identity: Option<(i64, i16)>,
    base_seq: i32,
    compression: Compression,
) -> Result<Bytes, ProducerError> {
    let now = records::now_ms();
    let mut batch: Vec<Record> = batch
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut r = records::record(
                i,
                p.record.key.clone(),
                p.record.value.clone(),
                p.record.timestamp.unwrap_or(now),
            );
            r.headers = p
                .record
                .headers
                .iter()
                .map(|(k, v)| (StrBytes::from_string(k.clone()), v.clone()))
                .collect();
            r
        })
        .collect();
    if let Some((pid, epoch)) = identity {
        records::idempotent(&mut batch, pid, epoch, base_seq);
    }
    records::encode(&batch, compression)
        .map_err(|e| ProducerError::Config(format!("cannot encode the batch: {e}")))
}

/// Sends one batch until acknowledged, a non-retriable error, or the delivery timeout of its
/// oldest record.
async fn send_with_retries(
    shared: &Shared,
    topic: &str,
    partition: i32,
    batch: &Bytes,
    pending: &[Pending],
    leader: &mut Option<Connection>,
) -> Result<i64, ProducerError> {
    let config = &shared.config;
    let give_up = pending
        .iter()
        .map(|p| p.enqueued)
        .min()
        .unwrap_or_else(Instant::now)
        + config.delivery_timeout;
    let mut last = String::from("none");
    loop {
        if Instant::now() >= give_up {
            return Err(ProducerError::Timeout(last));
        }
        if leader.is_none() {
            match connect_leader(shared, topic, partition).await {
                Ok(c) => *leader = Some(c),
                Err(e @ ProducerError::UnknownPartition { .. }) => return Err(e),
                Err(e) => {
                    last = e.to_string();
                    tokio::time::sleep(config.retry_backoff).await;
                    continue;
                }
            }
        }
        let conn = leader.as_mut().expect("connected");
        let req = ProduceRequest::default()
            .with_acks(config.acks)
            .with_timeout_ms(config.request_timeout.as_millis() as i32)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(topic_name(topic))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(partition)
                    .with_records(Some(batch.clone()))])]);
        if config.acks == 0 {
            match conn.write_request(&req, 9).await {
                Ok(_) => return Ok(-1),
                Err(e) => {
                    last = e.to_string();
                    *leader = None;
                    continue;
                }
            }
        }
        let sent = tokio::time::timeout(
            config.request_timeout + Duration::from_secs(5),
            conn.send(req, 9),
        )
        .await;
        let resp = match sent {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                last = e.to_string();
                *leader = None;
                tokio::time::sleep(config.retry_backoff).await;
                continue;
            }
            Err(_) => {
                last = "the request timed out".into();
                *leader = None;
                continue;
            }
        };
        let p = &resp.responses[0].partition_responses[0];
        match p.error_code {
            0 => return Ok(p.base_offset),
            code if retriable(code) => {
                last = crate::error_name(code);
                debug!(topic, partition, error = %last, "retrying batch");
                *leader = None;
                tokio::time::sleep(config.retry_backoff).await;
            }
            code => {
                return Err(broker_error(
                    code,
                    p.error_message.as_ref().map(|m| m.to_string()),
                ))
            }
        }
    }
}

async fn connect_leader(
    shared: &Shared,
    topic: &str,
    partition: i32,
) -> Result<Connection, ProducerError> {
    let mut cluster = shared.cluster.lock().await;
    let md = cluster.metadata(Some(&[topic])).await.inspect_err(|_| {
        cluster.reset();
    })?;
    let t = md
        .topics
        .iter()
        .find(|t| t.name.as_ref().map(|n| n.as_str()) == Some(topic))
        .ok_or_else(|| ProducerError::UnknownTopic(topic.to_string()))?;
    let p = t
        .partitions
        .iter()
        .find(|p| p.partition_index == partition)
        .ok_or_else(|| ProducerError::UnknownPartition {
            topic: topic.to_string(),
            partition,
        })?;
    let addr = md
        .brokers
        .iter()
        .find(|b| b.node_id == p.leader_id)
        .map(|b| format!("{}:{}", b.host.as_str(), b.port))
        .ok_or_else(|| ProducerError::Connection(format!("no leader for {topic}-{partition}")))?;
    drop(cluster);
    tokio::time::timeout(Duration::from_secs(5), Connection::connect(addr.as_str()))
        .await
        .map_err(|_| ProducerError::Connection(format!("connecting to {addr} timed out")))?
        .map_err(ProducerError::from)
}
