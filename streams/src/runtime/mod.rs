//! [`KafkaStreams`]: runs a topology against a cluster.
//!
//! `start` checks the source topics (they must exist and be co-partitioned where a
//! subtopology reads several), creates the internal topics (repartition topics with the
//! partition count of the subtopology that writes them; compacted changelogs with one
//! partition per task), then spawns `num.stream.threads` stream threads. Each thread is a
//! member of the consumer group `application.id`; the group's assignment decides which
//! thread of which instance runs which task. Instances can be added and stopped at any
//! time: the group rebalances and tasks move, their state following through the
//! changelogs.

mod assignor;
mod config;
mod global;
mod query;
mod tasks;

pub use query::Queries;
mod thread;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub use config::{ProcessingGuarantee, StreamsConfig};
use parking_lot::Mutex;
use strom_client::admin::{Admin, NewTopic};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{error, info};

use crate::error::StreamsError;
use crate::topology::{TopicRef, Topology};

/// The lifecycle of a [`KafkaStreams`] instance (Kafka's `KafkaStreams.State`, simplified).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamsState {
    Created,
    Running,
    PendingShutdown,
    NotRunning,
    /// A stream thread failed with this error; the others were stopped.
    Error(String),
}

/// Counters of a running instance.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    pub processed: AtomicU64,
    pub commits: AtomicU64,
    pub restored: AtomicU64,
    pub restarts: AtomicU64,
    pub skipped: AtomicU64,
    pub late_dropped: AtomicU64,
}

impl Metrics {
    pub(crate) fn snapshot(&self) -> StreamsMetrics {
        StreamsMetrics {
            processed: self.processed.load(Ordering::Relaxed),
            commits: self.commits.load(Ordering::Relaxed),
            restored: self.restored.load(Ordering::Relaxed),
            restarts: self.restarts.load(Ordering::Relaxed),
            skipped: self.skipped.load(Ordering::Relaxed),
            late_dropped: self.late_dropped.load(Ordering::Relaxed),
        }
    }
}

/// A snapshot of an instance's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StreamsMetrics {
    /// Input records processed (records processed again after a failure count twice).
    pub processed: u64,
    /// Commits (transactions under exactly-once).
    pub commits: u64,
    /// Changelog records read to restore state stores.
    pub restored: u64,
    /// Times a thread dropped its tasks and started its clients again.
    pub restarts: u64,
    /// Records skipped by the deserialization handler (and null-key records an aggregation
    /// dropped).
    pub skipped: u64,
    /// Records windowed aggregations dropped for arriving after the grace period.
    pub late_dropped: u64,
}

/// `m` as OpenMetrics text (`prometheus-client`, decision 0015), named as the Prometheus JMX
/// exporter's rules name Kafka Streams' metrics (`kafka.streams:type=stream-thread-metrics`
/// `process-total` becomes `kafka_streams_stream_thread_metrics_process_total`), labelled
/// with the `application.id`. Strom-only counters are `strom_streams_*`.
pub fn render_metrics(application_id: &str, m: &StreamsMetrics) -> String {
    use prometheus_client::encoding::EncodeLabelSet;
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::family::Family;
    use prometheus_client::registry::Registry;

    #[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
    struct App {
        application_id: String,
    }
    let mut registry = Registry::default();
    let counters = [
        (
            "kafka_streams_stream_thread_metrics_process",
            "Input records processed (again after a failure, counted again)",
            m.processed,
        ),
        (
            "kafka_streams_stream_thread_metrics_commit",
            "Commits (transactions under exactly-once)",
            m.commits,
        ),
        (
            "kafka_streams_stream_task_metrics_dropped_records",
            "Records dropped: skipped by the deserialization handler, null keys an aggregation dropped, and records after the grace period",
            m.skipped + m.late_dropped,
        ),
        (
            "strom_streams_late_records_dropped",
            "Records windowed aggregations dropped for arriving after the grace period",
            m.late_dropped,
        ),
        (
            "strom_streams_restored_records",
            "Changelog records read to restore state stores",
            m.restored,
        ),
        (
            "strom_streams_thread_restarts",
            "Times a stream thread dropped its tasks and started its clients again",
            m.restarts,
        ),
    ];
    for (name, help, v) in counters {
        let family = Family::<App, Counter>::default();
        family
            .get_or_create(&App {
                application_id: application_id.to_string(),
            })
            .inc_by(v);
        registry.register(name, help, family);
    }
    let mut out = String::new();
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
    out
}

/// What every stream thread of an instance shares.
pub(crate) struct Shared {
    pub config: StreamsConfig,
    pub topo: Arc<Topology>,
    pub partition_counts: Arc<HashMap<String, i32>>,
    /// Topic (cluster name) -> the subtopology reading it.
    pub readers: HashMap<String, usize>,
    /// Every topic the threads subscribe to.
    pub subscribed: Vec<String>,
    /// Names this instance's transactional ids.
    pub process_id: uuid::Uuid,
    /// Global tables, kept up to date by the global thread.
    pub globals: Arc<crate::store::GlobalStores>,
    /// Each running stream thread's tasks (interactive queries read their stores).
    pub managers: Mutex<Vec<Arc<tokio::sync::Mutex<tasks::TaskManager>>>>,
    pub metrics: Metrics,
}

/// A running topology (Kafka's `KafkaStreams`).
///
/// # Examples
/// ```no_run
/// # async fn run() -> Result<(), strom_streams::StreamsError> {
/// use strom_streams::{serdes, KafkaStreams, Produced, StreamsBuilder, StreamsConfig};
///
/// let b = StreamsBuilder::new();
/// b.stream("in", serdes::bytes(), serdes::string())
///     .filter(|_, v: &String| !v.is_empty())
///     .to("out", Produced::with(serdes::bytes(), serdes::string()));
/// let mut streams = KafkaStreams::new(b.build()?, StreamsConfig::new("app", "127.0.0.1:9092"))?;
/// streams.start().await?;
/// tokio::signal::ctrl_c().await.ok();
/// streams.close().await
/// # }
/// ```
pub struct KafkaStreams {
    topo: Arc<Topology>,
    config: StreamsConfig,
    state: Arc<Mutex<StreamsState>>,
    shared: Option<Arc<Shared>>,
    shutdown: Option<watch::Sender<bool>>,
    threads: Vec<JoinHandle<Result<(), StreamsError>>>,
}

impl KafkaStreams {
    pub fn new(topology: Topology, config: StreamsConfig) -> Result<Self, StreamsError> {
        config.validate()?;
        Ok(Self {
            topo: Arc::new(topology),
            config,
            state: Arc::new(Mutex::new(StreamsState::Created)),
            shared: None,
            shutdown: None,
            threads: Vec::new(),
        })
    }

    /// Prepares the topics and starts the stream threads.
    pub async fn start(&mut self) -> Result<(), StreamsError> {
        if *self.state.lock() != StreamsState::Created {
            return Err(StreamsError::Config("start() was already called".into()));
        }
        let counts = prepare_topics(&self.topo, &self.config).await?;
        let app = &self.config.application_id;
        let mut readers = HashMap::new();
        for (i, s) in self.topo.subtopologies.iter().enumerate() {
            for t in &s.sources {
                readers.insert(t.resolve(app), i);
            }
        }
        let mut subscribed: Vec<String> = readers.keys().cloned().collect();
        subscribed.sort();
        let shared = Arc::new(Shared {
            config: self.config.clone(),
            topo: self.topo.clone(),
            partition_counts: Arc::new(counts),
            readers,
            subscribed,
            process_id: uuid::Uuid::new_v4(),
            metrics: Metrics::default(),
            managers: Mutex::new(Vec::new()),
            globals: Arc::new(
                self.topo
                    .globals
                    .iter()
                    .map(|_| parking_lot::RwLock::new(crate::store::memory::MemoryStore::default()))
                    .collect(),
            ),
        });
        let (tx, rx) = watch::channel(false);
        if !self.topo.globals.is_empty() {
            let mut reader = global::GlobalReader::new(&shared).await?;
            reader.bootstrap(&shared).await?;
            let (shared, rx, state) = (shared.clone(), rx.clone(), self.state.clone());
            self.threads.push(tokio::spawn(async move {
                let r = reader.run(&shared, rx).await;
                if let Err(e) = &r {
                    let mut s = state.lock();
                    if !matches!(*s, StreamsState::Error(_)) {
                        *s = StreamsState::Error(format!("global thread: {e}"));
                    }
                }
                r
            }));
        }
        for i in 0..self.config.num_stream_threads {
            let (shared, rx, state) = (shared.clone(), rx.clone(), self.state.clone());
            self.threads.push(tokio::spawn(async move {
                let r = thread::run(shared, i, rx).await;
                if let Err(e) = &r {
                    let mut s = state.lock();
                    if !matches!(*s, StreamsState::Error(_)) {
                        *s = StreamsState::Error(format!("stream thread {i}: {e}"));
                    }
                }
                r
            }));
        }
        *self.state.lock() = StreamsState::Running;
        info!(application_id = %app, threads = self.config.num_stream_threads, process_id = %shared.process_id, "streams started");
        self.shared = Some(shared);
        self.shutdown = Some(tx);
        Ok(())
    }

    /// Interactive queries on this instance's stores (after `start`).
    pub fn queries(&self) -> Result<Queries, StreamsError> {
        self.shared
            .clone()
            .map(|shared| Queries { shared })
            .ok_or_else(|| StreamsError::Config("queries need a started instance".into()))
    }

    pub fn state(&self) -> StreamsState {
        self.state.lock().clone()
    }

    pub fn metrics(&self) -> StreamsMetrics {
        let Some(s) = &self.shared else {
            return StreamsMetrics::default();
        };
        s.metrics.snapshot()
    }

    /// The counters in the OpenMetrics text format, with Kafka Streams' metric names (what
    /// the application server's `/metrics` serves; see [`render_metrics`]).
    pub fn metrics_text(&self) -> String {
        render_metrics(&self.config.application_id, &self.metrics())
    }

    /// Resolves when a stream thread has failed (for a `select!` beside a signal).
    pub async fn failed(&self) -> String {
        loop {
            if let StreamsState::Error(e) = self.state() {
                return e;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }

    /// Runs until SIGINT or SIGTERM (or a thread fails), then closes cleanly. Returns the
    /// counters as they were at the end, or the failure. What a `main` usually does.
    pub async fn run_until_shutdown(self) -> Result<StreamsMetrics, StreamsError> {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|e| StreamsError::Config(format!("cannot handle SIGTERM: {e}")))?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => info!("SIGINT: closing"),
            _ = term.recv() => info!("SIGTERM: closing"),
            e = self.failed() => error!(error = %e, "a stream thread failed: closing"),
        }
        let metrics = self.metrics();
        self.close().await.map(|()| metrics)
    }

    /// Stops the threads cleanly: each commits, closes its tasks (with checkpoints) and
    /// leaves the group. Returns the first thread's error, if any failed.
    pub async fn close(mut self) -> Result<(), StreamsError> {
        {
            let mut s = self.state.lock();
            if !matches!(*s, StreamsState::Error(_)) {
                *s = StreamsState::PendingShutdown;
            }
        }
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(true);
        }
        let mut first = None;
        for t in self.threads.drain(..) {
            let r = match t.await {
                Ok(r) => r,
                Err(e) => Err(StreamsError::Config(format!(
                    "a stream thread panicked: {e}"
                ))),
            };
            if let Err(e) = r {
                first.get_or_insert(e);
            }
        }
        let mut s = self.state.lock();
        if !matches!(*s, StreamsState::Error(_)) {
            *s = StreamsState::NotRunning;
        }
        info!(application_id = %self.config.application_id, "streams closed");
        first.map_or(Ok(()), Err)
    }
}

/// Checks the source topics and creates the internal ones. Returns every topic's
/// partition count.
async fn prepare_topics(
    topo: &Topology,
    config: &StreamsConfig,
) -> Result<HashMap<String, i32>, StreamsError> {
    let app = &config.application_id;
    let mut admin = Admin::new(&config.bootstrap_servers);
    let mut counts: HashMap<String, i32> = HashMap::new();
    let globals = topo.globals.iter().map(|g| g.topic.clone());
    for t in topo.source_topics().into_iter().chain(globals) {
        match admin.describe_topic(&t).await {
            Ok(d) => {
                counts.insert(t, d.partitions.len() as i32);
            }
            Err(e) if e.code() == Some(3) => {
                return Err(StreamsError::Topology(format!(
                    "source topic '{t}' does not exist: create it before starting the application"
                )))
            }
            Err(e) => return Err(e.into()),
        }
    }
    // Task counts per subtopology; repartition topics take their writer's, which may
    // itself read a repartition topic: iterate until every count is known.
    let n = topo.subtopologies.len();
    // A repartition topic read beside user topics (a join after a key change) must have
    // their partition count: that is what co-partitions it with them.
    let mut pinned: BTreeMap<TopicRef, i32> = BTreeMap::new();
    for sub in &topo.subtopologies {
        let user = sub.sources.iter().find_map(|t| {
            (!t.internal)
                .then(|| counts.get(&t.name).copied())
                .flatten()
        });
        if let Some(c) = user {
            for t in sub.sources.iter().filter(|t| t.internal) {
                let fixed = topo
                    .repartitions
                    .iter()
                    .find(|r| &r.topic == t)
                    .and_then(|r| r.partitions);
                if let Some(f) = fixed.filter(|f| *f != c) {
                    return Err(StreamsError::Topology(format!(
                        "repartition topic '{}' is set to {f} partitions but is joined with topics of {c}: they must be co-partitioned",
                        t.name
                    )));
                }
                pinned.insert(t.clone(), c);
            }
        }
    }
    let mut tasks: Vec<Option<i32>> = vec![None; n];
    let mut repartition_counts: BTreeMap<TopicRef, i32> = BTreeMap::new();
    for _ in 0..=n {
        for (i, sub) in topo.subtopologies.iter().enumerate() {
            if tasks[i].is_some() {
                continue;
            }
            let mut known = Vec::new();
            let mut all = true;
            for t in &sub.sources {
                match (t.internal, counts.get(&t.name), repartition_counts.get(t)) {
                    (false, Some(c), _) => known.push((t.name.clone(), *c)),
                    (true, _, Some(c)) => known.push((t.resolve(app), *c)),
                    _ => all = false,
                }
            }
            if !all {
                continue;
            }
            let user: Vec<&(String, i32)> = known
                .iter()
                .filter(|(name, _)| counts.contains_key(name))
                .collect();
            if let Some((first, c)) = user.first() {
                if let Some((other, d)) = user.iter().find(|(_, d)| d != c) {
                    return Err(StreamsError::Topology(format!(
                        "topics '{first}' ({c} partitions) and '{other}' ({d} partitions) are read by one subtopology and must be co-partitioned (the same partition count)"
                    )));
                }
            }
            tasks[i] = known.iter().map(|(_, c)| *c).max();
        }
        for r in &topo.repartitions {
            if repartition_counts.contains_key(&r.topic) {
                continue;
            }
            let count = pinned
                .get(&r.topic)
                .copied()
                .or(r.partitions)
                .or(tasks[r.writer]);
            if let Some(c) = count {
                repartition_counts.insert(r.topic.clone(), c);
            }
        }
    }
    for r in &topo.repartitions {
        let Some(&c) = repartition_counts.get(&r.topic) else {
            return Err(StreamsError::Topology(format!(
                "cannot size repartition topic '{}'",
                r.topic.name
            )));
        };
        let name = r.topic.resolve(app);
        ensure_topic(&mut admin, &name, c, config.replication_factor, "delete").await?;
        counts.insert(name, c);
    }
    for s in topo.stores.iter().filter(|s| s.logged) {
        let Some(c) = tasks.get(s.subtopology).copied().flatten() else {
            return Err(StreamsError::Topology(format!(
                "cannot size the changelog of store '{}'",
                s.name
            )));
        };
        let name = s.changelog().resolve(app);
        ensure_topic(&mut admin, &name, c, config.replication_factor, "compact").await?;
        counts.insert(name, c);
    }
    Ok(counts)
}

async fn ensure_topic(
    admin: &mut Admin,
    name: &str,
    partitions: i32,
    replication_factor: i16,
    cleanup_policy: &str,
) -> Result<(), StreamsError> {
    let topic = NewTopic::new(name, partitions, replication_factor)
        .with_config("cleanup.policy", cleanup_policy);
    if admin.create_topic_if_missing(&topic).await? {
        info!(
            topic = name,
            partitions, cleanup_policy, "created internal topic"
        );
        return Ok(());
    }
    // It existed: fine if its partitions match.
    let have = admin.describe_topic(name).await?.partitions.len() as i32;
    if have != partitions {
        error!(
            topic = name,
            have,
            want = partitions,
            "internal topic has the wrong partition count"
        );
        return Err(StreamsError::Topology(format!(
            "internal topic '{name}' has {have} partitions, but the topology needs {partitions} (was an input topic resized? reset the application)"
        )));
    }
    Ok(())
}
