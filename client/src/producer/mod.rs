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
//! With a `transactional.id` the producer writes transactions ([`transaction`] has the
//! states and the coordinator requests): `init_transactions` once (fencing any earlier
//! producer with the id), then `begin_transaction`, sends, optionally
//! `send_offsets_to_transaction` (consume-transform-produce), and `commit_transaction` or
//! `abort_transaction`. Read the output with `isolation.level=read_committed`.
//!
//! ```no_run
//! # async fn eos() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use strom_client::consumer::{Consumer, ConsumerConfig, IsolationLevel};
//! use strom_client::producer::{Producer, ProducerConfig, ProducerRecord};
//! let mut input = ConsumerConfig::new("127.0.0.1:9092");
//! input.group_id = Some("uppercaser".into());
//! input.enable_auto_commit = false;
//! input.isolation_level = IsolationLevel::ReadCommitted;
//! let mut consumer = Consumer::new(input)?;
//! consumer.subscribe(&["in"])?;
//! let producer =
//!     Producer::new(ProducerConfig::new("127.0.0.1:9092").with_transactional_id("uppercaser-0"))
//!         .await?;
//! producer.init_transactions().await?;
//! loop {
//!     let records = consumer.poll(Duration::from_millis(500)).await?;
//!     if records.is_empty() {
//!         continue;
//!     }
//!     producer.begin_transaction().await?;
//!     let mut offsets = std::collections::BTreeMap::new();
//!     for r in &records {
//!         let value = r.value.as_deref().unwrap_or_default().to_ascii_uppercase();
//!         producer.send(ProducerRecord::new("out", value)).await?;
//!         offsets.insert(strom_client::TopicPartition::new(&r.topic, r.partition), r.offset + 1);
//!     }
//!     let offsets: Vec<_> = offsets.into_iter().collect();
//!     let group = consumer.group_metadata().expect("a group member");
//!     producer.send_offsets_to_transaction(&offsets, &group).await?;
//!     if let Err(e) = producer.commit_transaction().await {
//!         if e.is_fatal() {
//!             return Err(e.into()); // fenced: another instance took over
//!         }
//!         producer.abort_transaction().await?;
//!         // ...and seek the consumer back to its committed offsets.
//!     }
//! }
//! # }
//! ```
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
use crate::consumer::ConsumerGroupMetadata;
use crate::{ClientError, Connection, TopicPartition};

mod transaction;
use transaction::{State, TxnManager};

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
    /// `transactional.id`: makes the producer transactional (and idempotent).
    pub transactional_id: Option<String>,
    /// `transaction.timeout.ms`: the coordinator aborts a transaction open longer.
    pub transaction_timeout: Duration,
    /// `security.protocol` and its TLS and SASL settings.
    pub security: crate::security::Security,
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
            transactional_id: None,
            transaction_timeout: Duration::from_secs(60),
            security: crate::security::Security::plaintext(),
        }
    }

    /// Connections run TLS and SASL as `security` says.
    pub fn with_security(mut self, security: crate::security::Security) -> Self {
        self.security = security;
        self
    }

    /// A transactional producer with this `transactional.id`.
    pub fn with_transactional_id(mut self, id: impl Into<String>) -> Self {
        self.transactional_id = Some(id.into());
        self
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
    /// Fatal: another producer with the same `transactional.id` took over.
    #[error("fenced: {0}")]
    Fenced(String),
    /// The transaction cannot commit: abort it (and rewind what it consumed).
    #[error("the transaction must be aborted: {0}")]
    TransactionAbortable(String),
    /// Fatal for a transactional producer (e.g. INVALID_TXN_STATE).
    #[error("transactional producer failed: {0}")]
    TransactionFatal(String),
    /// A transactional call that does not fit the producer's state (begin twice, commit with
    /// no transaction, a transactional call on a producer without `transactional.id`).
    #[error("invalid transaction state: {0}")]
    TransactionState(String),
}

impl ProducerError {
    /// The producer cannot go on; make a new one (Java's fatal errors).
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            ProducerError::Fenced(_) | ProducerError::TransactionFatal(_)
        )
    }

    /// The transaction failed but the producer can abort it and go on.
    pub fn is_abortable(&self) -> bool {
        !self.is_fatal() && !matches!(self, ProducerError::TransactionState(_))
    }
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
    /// Producer id and epoch, when idempotent (a transactional producer gets them from
    /// `init_transactions`, and a new epoch after an abort that followed failed sends).
    identity: std::sync::RwLock<Option<(i64, i16)>>,
    /// The first failure of a send in the open transaction: it cannot commit.
    txn_error: std::sync::Mutex<Option<ProducerError>>,
    /// Transaction version 2 is in use: Produce goes at v12, which adds the partition to the
    /// transaction at its leader.
    tv2: std::sync::atomic::AtomicBool,
    /// Partition count by topic, and the sticky partition for keyless records.
    topics: std::sync::Mutex<HashMap<String, (i32, i32)>>,
}

impl Shared {
    fn identity(&self) -> Option<(i64, i16)> {
        *self.identity.read().unwrap_or_else(|e| e.into_inner())
    }

    fn set_identity(&self, identity: (i64, i16)) {
        *self.identity.write().unwrap_or_else(|e| e.into_inner()) = Some(identity);
    }

    /// Remembers a failed send of a transactional producer (the first one wins).
    fn txn_failed(&self, e: &ProducerError) {
        if self.config.transactional_id.is_some() {
            self.txn_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_or_insert_with(|| e.clone());
        }
    }

    fn take_txn_error(&self) -> Option<ProducerError> {
        self.txn_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

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
    /// The transaction manager, with a `transactional.id`.
    txn: Option<Mutex<TxnManager>>,
}

impl Producer {
    /// Connects to the cluster and, when idempotent, gets a producer id (InitProducerId).
    pub async fn new(config: ProducerConfig) -> Result<Self, ProducerError> {
        if config.idempotence && config.acks != -1 {
            return Err(ProducerError::Config(
                "idempotence needs acks=-1 (all)".into(),
            ));
        }
        if config.transactional_id.is_some() && !config.idempotence {
            return Err(ProducerError::Config(
                "a transactional.id needs enable.idempotence".into(),
            ));
        }
        if config.transactional_id.as_deref() == Some("") {
            return Err(ProducerError::Config("transactional.id is empty".into()));
        }
        let mut cluster = ClusterClient::with_security(&config.bootstrap, config.security.clone());
        let txn = config.transactional_id.clone().map(|id| {
            Mutex::new(TxnManager::new(
                id,
                ClusterClient::with_security(&config.bootstrap, config.security.clone()),
                config.transaction_timeout,
                config.request_timeout,
                config.retry_backoff,
            ))
        });
        // A transactional producer's identity comes with init_transactions.
        let identity = if config.idempotence && txn.is_none() {
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
                identity: std::sync::RwLock::new(identity),
                txn_error: std::sync::Mutex::new(None),
                tv2: std::sync::atomic::AtomicBool::new(false),
                topics: std::sync::Mutex::new(HashMap::new()),
            }),
            workers: Mutex::new(HashMap::new()),
            txn,
        })
    }

    /// The producer id and epoch (idempotent producers).
    pub fn identity(&self) -> Option<(i64, i16)> {
        self.shared.identity()
    }

    fn txn(&self) -> Result<&Mutex<TxnManager>, ProducerError> {
        self.txn.as_ref().ok_or_else(|| {
            ProducerError::TransactionState("the producer has no transactional.id".into())
        })
    }

    /// Registers the `transactional.id` with its coordinator and gets the producer id and a
    /// new epoch, fencing any earlier producer with this id (its open transaction is
    /// aborted). Call once, before the first transaction. This is also when the producer
    /// learns whether the cluster runs transaction version 2 (KIP-890 part 2), which it then
    /// uses: see [`Producer::transaction_version`].
    pub async fn init_transactions(&self) -> Result<(), ProducerError> {
        let mut t = self.txn()?.lock().await;
        t.check(&State::Uninitialized, "init_transactions")?;
        match t.init_producer_id(None).await {
            Ok(identity) => {
                self.shared.set_identity(identity);
                t.tv2 = t.detect_tv2().await;
                self.shared
                    .tv2
                    .store(t.tv2, std::sync::atomic::Ordering::Relaxed);
                t.state = State::Ready;
                Ok(())
            }
            Err(e) => Err(t.fail(e)),
        }
    }

    /// The transaction version in use: 2 (KIP-890 part 2: no AddPartitionsToTxn or
    /// AddOffsetsToTxn, the epoch bumped at every commit and abort) when the cluster
    /// finalized `transaction.version` 2, else 1. Known after `init_transactions`.
    pub fn transaction_version(&self) -> i16 {
        if self.shared.tv2.load(std::sync::atomic::Ordering::Relaxed) {
            2
        } else {
            1
        }
    }

    /// Starts a transaction: every send until commit or abort belongs to it.
    pub async fn begin_transaction(&self) -> Result<(), ProducerError> {
        let mut t = self.txn()?.lock().await;
        t.check(&State::Ready, "begin_transaction")?;
        self.shared.take_txn_error();
        t.state = State::InTransaction;
        Ok(())
    }

    /// Adds a consumer's offsets to the transaction: they are committed for the group if,
    /// and only if, the transaction commits (consume-transform-produce). `offsets` are the
    /// next offsets to read (last processed + 1).
    pub async fn send_offsets_to_transaction(
        &self,
        offsets: &[(TopicPartition, i64)],
        group: &ConsumerGroupMetadata,
    ) -> Result<(), ProducerError> {
        let mut t = self.txn()?.lock().await;
        t.check(&State::InTransaction, "send_offsets_to_transaction")?;
        let identity = self.transactional_identity()?;
        match t.send_offsets(identity, offsets, group).await {
            Ok(()) => Ok(()),
            Err(e) => Err(t.fail(e)),
        }
    }

    /// Sends what is queued, then commits: every record of the transaction becomes visible
    /// to read_committed consumers at once, with the offsets sent. If a send failed, nothing
    /// is committed and the error says to abort.
    pub async fn commit_transaction(&self) -> Result<(), ProducerError> {
        let t = self.txn()?;
        t.lock()
            .await
            .check(&State::InTransaction, "commit_transaction")?;
        self.flush().await;
        let mut t = t.lock().await;
        if let Some(e) = self.shared.take_txn_error() {
            let e = if e.is_fatal() {
                e
            } else {
                ProducerError::TransactionAbortable(format!("a send failed: {e}"))
            };
            return Err(t.fail(e));
        }
        let identity = self.transactional_identity()?;
        match t.end(identity, true).await {
            Ok(next) => {
                if let Some(next) = next {
                    self.shared.set_identity(next);
                }
                Ok(())
            }
            Err(e) => Err(t.fail(e)),
        }
    }

    /// Abandons the transaction: waits for what is in flight, then aborts it, so
    /// read_committed consumers never see its records (nor its offsets). After failed sends
    /// the producer also takes a new epoch (KIP-360), so its sequences start afresh.
    pub async fn abort_transaction(&self) -> Result<(), ProducerError> {
        let t = self.txn()?;
        {
            let t = t.lock().await;
            if !matches!(t.state, State::InTransaction | State::AbortableError(_)) {
                t.check(&State::InTransaction, "abort_transaction")?;
            }
        }
        self.flush().await;
        let mut t = t.lock().await;
        let failed_sends = self.shared.take_txn_error();
        if let Some(e) = failed_sends.as_ref().filter(|e| e.is_fatal()) {
            return Err(t.fail(e.clone()));
        }
        let identity = self.transactional_identity()?;
        match t.end(identity, false).await {
            Err(e) => return Err(t.fail(e)),
            // Transaction version 2: the abort bumped the epoch, so sequences start afresh.
            Ok(Some(next)) => {
                self.shared.set_identity(next);
                return Ok(());
            }
            Ok(None) if t.tv2 => return Ok(()),
            Ok(None) => {}
        }
        if failed_sends.is_some() {
            match t.init_producer_id(Some(identity)).await {
                Ok(next) => self.shared.set_identity(next),
                Err(e) => return Err(t.fail(e)),
            }
        }
        Ok(())
    }

    fn transactional_identity(&self) -> Result<(i64, i16), ProducerError> {
        self.shared.identity().ok_or_else(|| {
            ProducerError::TransactionState("init_transactions has not succeeded".into())
        })
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
        if let Some(t) = &self.txn {
            // The partition joins the transaction before any of its records go out.
            let mut t = t.lock().await;
            t.check(&State::InTransaction, "send")?;
            let tp = TopicPartition::new(record.topic.clone(), partition);
            let identity = self.transactional_identity()?;
            if let Err(e) = t.add_partitions(identity, &[tp]).await {
                return Err(t.fail(e));
            }
        }
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
                // Transaction version 2: the leader could not add the partition yet (the
                // previous transaction's markers are still being written).
                | ResponseError::ConcurrentTransactions
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
    // Sequences count per producer id and epoch: a new epoch starts them at 0.
    let mut sequence_owner = shared.identity();
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
        let identity = shared.identity();
        if identity != sequence_owner {
            sequence = 0;
            sequence_owner = identity;
        }
        let base_seq = sequence;
        let transactional = config.transactional_id.is_some();
        let encoded = match encode(
            &batch,
            identity,
            base_seq,
            config.compression,
            transactional,
        ) {
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
                shared.txn_failed(&e);
                for p in batch {
                    let _ = p.delivery.send(Err(e.clone()));
                }
                if identity.is_some() {
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
    transactional: bool,
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
    for r in batch.iter_mut().filter(|_| transactional) {
        r.transactional = true;
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
            .with_transactional_id(config.transactional_id.as_ref().map(|id| {
                kafka_protocol::messages::TransactionalId(StrBytes::from_string(id.clone()))
            }))
            .with_acks(config.acks)
            .with_timeout_ms(config.request_timeout.as_millis() as i32)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(topic_name(topic))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(partition)
                    .with_records(Some(batch.clone()))])]);
        // Transaction version 2 produces at v12: the leader adds the partition to the
        // transaction.
        let version = if shared.tv2.load(std::sync::atomic::Ordering::Relaxed) {
            12
        } else {
            9
        };
        if config.acks == 0 {
            match conn.write_request(&req, version).await {
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
            conn.send(req, version),
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
                return Err(transaction::produce_error(
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
    let security = cluster.security().clone();
    drop(cluster);
    tokio::time::timeout(Duration::from_secs(5), security.connect(&addr))
        .await
        .map_err(|_| ProducerError::Connection(format!("connecting to {addr} timed out")))?
        .map_err(ProducerError::from)
}
