//! The broker's metrics at `/metrics`, kept with `prometheus-client` (decision 0015).
//!
//! Names follow the way the Prometheus JMX exporter's common Kafka rules flatten Kafka's JMX
//! names (`kafka.server:type=BrokerTopicMetrics,name=BytesInPerSec,topic=t` becomes
//! `kafka_server_brokertopicmetrics_bytesin_total{topic="t"}`), so the dashboards and alerts
//! of a Kafka operator carry over; consumer lag uses kafka-exporter's names
//! (`kafka_consumergroup_lag`). What Kafka has no name for is `strom_...`.
//!
//! Counters and histograms are recorded as requests run (unless `--metrics-enabled false`);
//! gauges (partitions, log sizes, consumer lag, RocksDB) are read from the broker's state at
//! each scrape, so they cost nothing between scrapes. The full list is in
//! `docs/observability.md`.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use kafka_protocol::messages::ResponseKind;
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use strom_storage::TopicPartition;

use crate::Broker;

/// Request time buckets, in milliseconds (Kafka's request metrics are in ms).
const TIME_BUCKETS_MS: [f64; 16] = [
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0,
    30000.0,
];

fn time_histogram() -> Histogram {
    Histogram::new(TIME_BUCKETS_MS)
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    request: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    request: &'static str,
    error: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TopicLabels {
    topic: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabels {
    listener: String,
}

type TimeFamily = Family<RequestLabels, Histogram, fn() -> Histogram>;

/// What the broker records as it runs. Gauges read at scrape time are built by [`scrape`].
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    enabled: AtomicBool,
    requests: Family<RequestLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    total_time: TimeFamily,
    local_time: TimeFamily,
    remote_time: TimeFamily,
    bytes_in: Family<TopicLabels, Counter>,
    messages_in: Family<TopicLabels, Counter>,
    bytes_out: Family<TopicLabels, Counter>,
    replication_bytes_out: Counter,
    connections: Family<ListenerLabels, Gauge>,
    connections_created: Family<ListenerLabels, Counter>,
    pub connections_closed_on_error: Counter,
    pub successful_authentications: Counter,
    pub successful_reauthentications: Counter,
    pub failed_authentications: Counter,
    pub isr_shrinks: Counter,
    pub isr_expands: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new(true)
    }
}

impl Metrics {
    /// `enabled: false` skips recording per request and per topic (the scrape-time gauges
    /// stay): what `--metrics-enabled false` is for, measuring what recording costs.
    pub fn new(enabled: bool) -> Self {
        let mut registry = Registry::default();
        let time = || TimeFamily::new_with_constructor(time_histogram);
        let m = Self {
            registry: Registry::default(),
            enabled: AtomicBool::new(enabled),
            requests: Family::default(),
            errors: Family::default(),
            total_time: time(),
            local_time: time(),
            remote_time: time(),
            bytes_in: Family::default(),
            messages_in: Family::default(),
            bytes_out: Family::default(),
            replication_bytes_out: Counter::default(),
            connections: Family::default(),
            connections_created: Family::default(),
            connections_closed_on_error: Counter::default(),
            successful_authentications: Counter::default(),
            successful_reauthentications: Counter::default(),
            failed_authentications: Counter::default(),
            isr_shrinks: Counter::default(),
            isr_expands: Counter::default(),
        };
        registry.register(
            "kafka_network_requestmetrics_requests",
            "Requests answered, by API (Fetch split into FetchConsumer and FetchFollower)",
            m.requests.clone(),
        );
        registry.register(
            "kafka_network_requestmetrics_errors",
            "Error codes in answers, by API and Kafka error name (one per partition or entity that failed)",
            m.errors.clone(),
        );
        registry.register(
            "kafka_network_requestmetrics_totaltimems",
            "Milliseconds from a request's arrival to its answer being queued for the socket",
            m.total_time.clone(),
        );
        registry.register(
            "kafka_network_requestmetrics_localtimems",
            "Milliseconds of a request's time spent on this broker (total less remote)",
            m.local_time.clone(),
        );
        registry.register(
            "kafka_network_requestmetrics_remotetimems",
            "Milliseconds a request waited on others: followers for acks=all, new data for a fetch's max.wait.ms",
            m.remote_time.clone(),
        );
        registry.register(
            "kafka_server_brokertopicmetrics_bytesin",
            "Record batch bytes appended by producers, by topic",
            m.bytes_in.clone(),
        );
        registry.register(
            "kafka_server_brokertopicmetrics_messagesin",
            "Records appended by producers, by topic",
            m.messages_in.clone(),
        );
        registry.register(
            "kafka_server_brokertopicmetrics_bytesout",
            "Record batch bytes sent to consumers, by topic",
            m.bytes_out.clone(),
        );
        registry.register(
            "kafka_server_brokertopicmetrics_replicationbytesout",
            "Record batch bytes sent to followers",
            m.replication_bytes_out.clone(),
        );
        registry.register(
            "kafka_server_socketservermetrics_connection_count",
            "Open Kafka connections, by listener",
            m.connections.clone(),
        );
        registry.register(
            "kafka_server_socketservermetrics_connection_creation",
            "Kafka connections accepted, by listener",
            m.connections_created.clone(),
        );
        registry.register(
            "strom_connections_closed_on_error",
            "Kafka connections closed because of bad input",
            m.connections_closed_on_error.clone(),
        );
        registry.register(
            "kafka_server_socketservermetrics_successful_authentication",
            "SASL authentications that succeeded",
            m.successful_authentications.clone(),
        );
        registry.register(
            "kafka_server_socketservermetrics_successful_reauthentication",
            "SASL re-authentications (KIP-368) that succeeded",
            m.successful_reauthentications.clone(),
        );
        registry.register(
            "kafka_server_socketservermetrics_failed_authentication",
            "SASL authentications that failed (the connection was closed)",
            m.failed_authentications.clone(),
        );
        registry.register(
            "kafka_server_replicamanager_isrshrinks",
            "ISR shrinks of partitions led here (proposed by this leader or made by the controller)",
            m.isr_shrinks.clone(),
        );
        registry.register(
            "kafka_server_replicamanager_isrexpands",
            "ISR expands of partitions led here",
            m.isr_expands.clone(),
        );
        Self { registry, ..m }
    }

    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// A request handled: its time, what of it was spent waiting (see [`waited`]), and the
    /// error codes its answer carries (`None`: an acks=0 produce, which gets no answer).
    pub fn request(
        &self,
        request: &'static str,
        started: Instant,
        remote: Duration,
        response: Option<&ResponseKind>,
    ) {
        if !self.enabled() {
            return;
        }
        let labels = RequestLabels { request };
        let total = started.elapsed();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        self.requests.get_or_create(&labels).inc();
        self.total_time.get_or_create(&labels).observe(ms(total));
        self.remote_time.get_or_create(&labels).observe(ms(remote));
        self.local_time
            .get_or_create(&labels)
            .observe(ms(total.saturating_sub(remote)));
        let Some(response) = response else {
            return;
        };
        for_each_error(response, &mut |code| {
            self.errors
                .get_or_create(&ErrorLabels {
                    request,
                    error: strom_client::error_name(code),
                })
                .inc();
        });
    }

    /// Records appended to `topic` by a producer.
    pub fn produced(&self, topic: &str, records: u64, bytes: u64) {
        if !self.enabled() {
            return;
        }
        let labels = TopicLabels {
            topic: topic.to_string(),
        };
        self.bytes_in.get_or_create(&labels).inc_by(bytes);
        self.messages_in.get_or_create(&labels).inc_by(records);
    }

    /// Record bytes of `topic` sent to a consumer.
    pub fn fetched(&self, topic: &str, bytes: u64) {
        if !self.enabled() || bytes == 0 {
            return;
        }
        self.bytes_out
            .get_or_create(&TopicLabels {
                topic: topic.to_string(),
            })
            .inc_by(bytes);
    }

    /// Record bytes sent to a follower.
    pub fn replicated_out(&self, bytes: u64) {
        if self.enabled() {
            self.replication_bytes_out.inc_by(bytes);
        }
    }

    /// A connection accepted on `listener`; it counts as open until the guard drops.
    pub fn connection_opened(&self, listener: &str) -> ConnectionGuard {
        let labels = ListenerLabels {
            listener: listener.to_string(),
        };
        self.connections_created.get_or_create(&labels).inc();
        let open = self.connections.get_or_create(&labels).clone();
        open.inc();
        ConnectionGuard(open)
    }
}

/// Keeps a connection counted as open.
pub struct ConnectionGuard(Gauge);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

tokio::task_local! {
    /// Time the request being handled on this task has spent waiting on others.
    static REMOTE: Cell<Duration>;
}

/// Runs `f` (a request's handling) and returns what it answered with the time it spent in
/// [`waited`] sections.
pub async fn with_remote_time<F: std::future::Future>(f: F) -> (F::Output, Duration) {
    REMOTE
        .scope(Cell::new(Duration::ZERO), async move {
            let out = f.await;
            (out, REMOTE.with(Cell::get))
        })
        .await
}

/// Counts the time since `since` as waiting on others (followers, new data): Kafka's remote
/// time. Outside a request (no scope) it does nothing.
pub fn waited(since: Instant) {
    let d = since.elapsed();
    let _ = REMOTE.try_with(|r| r.set(r.get() + d));
}

/// Calls `f` with each error code (not NONE) the answer carries, one per failed partition,
/// group or entity, as Kafka's `errorCounts` does, for the APIs that carry data.
fn for_each_error(response: &ResponseKind, f: &mut dyn FnMut(i16)) {
    let mut code = |c: i16| {
        if c != 0 {
            f(c)
        }
    };
    match response {
        ResponseKind::Produce(r) => r
            .responses
            .iter()
            .flat_map(|t| &t.partition_responses)
            .for_each(|p| code(p.error_code)),
        ResponseKind::Fetch(r) => {
            code(r.error_code);
            r.responses
                .iter()
                .flat_map(|t| &t.partitions)
                .for_each(|p| code(p.error_code));
        }
        ResponseKind::ListOffsets(r) => r
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .for_each(|p| code(p.error_code)),
        ResponseKind::Metadata(r) => r.topics.iter().for_each(|t| code(t.error_code)),
        ResponseKind::OffsetCommit(r) => r
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .for_each(|p| code(p.error_code)),
        ResponseKind::OffsetFetch(r) => {
            code(r.error_code);
            r.groups.iter().for_each(|g| code(g.error_code));
        }
        ResponseKind::FindCoordinator(r) => {
            code(r.error_code);
            r.coordinators.iter().for_each(|c| code(c.error_code));
        }
        ResponseKind::JoinGroup(r) => code(r.error_code),
        ResponseKind::SyncGroup(r) => code(r.error_code),
        ResponseKind::Heartbeat(r) => code(r.error_code),
        ResponseKind::LeaveGroup(r) => code(r.error_code),
        ResponseKind::InitProducerId(r) => code(r.error_code),
        ResponseKind::EndTxn(r) => code(r.error_code),
        ResponseKind::AddOffsetsToTxn(r) => code(r.error_code),
        ResponseKind::CreateTopics(r) => r.topics.iter().for_each(|t| code(t.error_code)),
        ResponseKind::DeleteTopics(r) => r.responses.iter().for_each(|t| code(t.error_code)),
        ResponseKind::CreatePartitions(r) => r.results.iter().for_each(|t| code(t.error_code)),
        ResponseKind::DescribeGroups(r) => r.groups.iter().for_each(|g| code(g.error_code)),
        ResponseKind::DeleteGroups(r) => r.results.iter().for_each(|g| code(g.error_code)),
        ResponseKind::DescribeConfigs(r) => r.results.iter().for_each(|c| code(c.error_code)),
        ResponseKind::IncrementalAlterConfigs(r) => {
            r.responses.iter().for_each(|c| code(c.error_code))
        }
        ResponseKind::AlterConfigs(r) => r.responses.iter().for_each(|c| code(c.error_code)),
        ResponseKind::TxnOffsetCommit(r) => r
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .for_each(|p| code(p.error_code)),
        _ => {}
    }
}

/// The `/metrics` text: what was recorded, then gauges read from the broker now.
pub fn scrape(broker: &Broker) -> String {
    let mut out = String::new();
    let _ = encode_registry(&mut out, &broker.metrics.registry);
    let _ = encode_registry(&mut out, &state_registry(broker));
    let _ = encode_eof(&mut out);
    out
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartitionLabels {
    topic: String,
    partition: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupPartitionLabels {
    consumergroup: String,
    topic: String,
    partition: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupLabels {
    consumergroup: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QuotaLabels {
    quota: &'static str,
}

/// A gauge per named value, its name in the label `label` (`{label="name"}`).
fn named_gauges(
    label: &'static str,
    values: Vec<(&'static str, u64)>,
) -> Family<[(&'static str, &'static str); 1], Gauge> {
    let family = Family::<[(&'static str, &'static str); 1], Gauge>::default();
    for (name, v) in values {
        family
            .get_or_create(&[(label, name)])
            .set(i64::try_from(v).unwrap_or(i64::MAX));
    }
    family
}

/// jemalloc's process-wide totals, refreshed for this read; none if it does not answer.
fn allocator_stats() -> Vec<(&'static str, u64)> {
    use tikv_jemalloc_ctl::{epoch, stats};
    if epoch::advance().is_err() {
        return Vec::new();
    }
    [
        ("allocated", stats::allocated::read()),
        ("active", stats::active::read()),
        ("metadata", stats::metadata::read()),
        ("resident", stats::resident::read()),
        ("mapped", stats::mapped::read()),
        ("retained", stats::retained::read()),
    ]
    .into_iter()
    .filter_map(|(stat, v)| Some((stat, v.ok()? as u64)))
    .collect()
}

/// Gauges (and counters kept elsewhere) read from the broker's state at scrape time.
fn state_registry(broker: &Broker) -> Registry {
    let mut reg = Registry::default();
    let image = broker.image();
    let gauge = |reg: &mut Registry, name: &str, help: &str, v: i64| {
        let g: Gauge = Gauge::default();
        g.set(v);
        reg.register(name, help, g);
    };

    // Replica manager: what this broker holds and leads.
    let (mut partitions, mut leaders, mut under_replicated, mut under_min_isr, mut at_min_isr) =
        (0, 0, 0, 0, 0);
    let mut max_lag = 0i64;
    let size = Family::<PartitionLabels, Gauge>::default();
    let log_end = Family::<PartitionLabels, Gauge>::default();
    let log_start = Family::<PartitionLabels, Gauge>::default();
    let high_watermark = Family::<PartitionLabels, Gauge>::default();
    for t in image.topics() {
        let min_isr = crate::topic_config::int(
            &broker.config,
            Some(t.as_ref()),
            metadata_quorum::configs::MIN_INSYNC_REPLICAS,
        )
        .unwrap_or(1);
        for p in &t.partitions {
            let Some(log) = broker
                .logs
                .get(&TopicPartition::new(t.topic_id, p.partition))
            else {
                continue;
            };
            partitions += 1;
            let state = log.state();
            let labels = PartitionLabels {
                topic: t.name.clone(),
                partition: p.partition.to_string(),
            };
            size.get_or_create(&labels).set(state.size_bytes as i64);
            log_end.get_or_create(&labels).set(state.log_end_offset);
            log_start.get_or_create(&labels).set(state.log_start_offset);
            high_watermark
                .get_or_create(&labels)
                .set(log.high_watermark());
            if p.leader == broker.node_id {
                leaders += 1;
                let isr = p.isr.len() as i64;
                under_replicated += i64::from(isr < p.replicas.len() as i64);
                under_min_isr += i64::from(isr < min_isr);
                at_min_isr += i64::from(isr == min_isr);
            } else {
                max_lag = max_lag.max(log.follower_lag());
            }
        }
    }
    gauge(
        &mut reg,
        "kafka_server_replicamanager_partitioncount",
        "Partition replicas this broker holds",
        partitions,
    );
    gauge(
        &mut reg,
        "kafka_server_replicamanager_leadercount",
        "Partitions this broker leads",
        leaders,
    );
    gauge(
        &mut reg,
        "kafka_server_replicamanager_underreplicatedpartitions",
        "Partitions led here whose ISR is smaller than their replica set",
        under_replicated,
    );
    gauge(
        &mut reg,
        "kafka_server_replicamanager_underminisrpartitioncount",
        "Partitions led here whose ISR is below min.insync.replicas (acks=all produce fails)",
        under_min_isr,
    );
    gauge(
        &mut reg,
        "kafka_server_replicamanager_atminisrpartitioncount",
        "Partitions led here whose ISR is exactly min.insync.replicas",
        at_min_isr,
    );
    gauge(
        &mut reg,
        "kafka_server_replicafetchermanager_maxlag",
        "Most records any follower replica here is behind its leader's high watermark",
        max_lag.max(0),
    );
    reg.register(
        "kafka_log_log_size",
        "Bytes of record batches held, by partition replica",
        size,
    );
    reg.register(
        "kafka_log_log_logendoffset",
        "Log end offset, by partition replica",
        log_end,
    );
    reg.register(
        "kafka_log_log_logstartoffset",
        "Log start offset, by partition replica",
        log_start,
    );
    reg.register(
        "kafka_cluster_partition_highwatermark",
        "High watermark, by partition replica",
        high_watermark,
    );

    // Group coordinator: the groups this broker coordinates, and their consumers' lag.
    let groups = broker.groups.list();
    let by_state = Family::<StateLabels, Gauge>::default();
    for state in [
        "PreparingRebalance",
        "CompletingRebalance",
        "Stable",
        "Dead",
        "Empty",
        // Consumer-protocol groups (KIP-848).
        "Assigning",
        "Reconciling",
    ] {
        let _ = by_state.get_or_create(&StateLabels { state });
    }
    let current = Family::<GroupPartitionLabels, Gauge>::default();
    let lag = Family::<GroupPartitionLabels, Gauge>::default();
    let lag_sum = Family::<GroupLabels, Gauge>::default();
    let members = Family::<GroupLabels, Gauge>::default();
    for (id, state, _) in &groups {
        by_state.get_or_create(&StateLabels { state }).inc();
        if let Some(d) = broker.groups.describe(id) {
            members
                .get_or_create(&GroupLabels {
                    consumergroup: id.clone(),
                })
                .set(d.members.len() as i64);
        }
        // Lag against this broker's replica of each partition, or the leader's end as last
        // asked (Broker::group_lag).
        for o in broker.group_lag(id) {
            let labels = GroupPartitionLabels {
                consumergroup: id.clone(),
                topic: o.topic,
                partition: o.partition.to_string(),
            };
            current.get_or_create(&labels).set(o.committed.offset);
            if let Some(l) = o.lag {
                lag.get_or_create(&labels).set(l);
                lag_sum
                    .get_or_create(&GroupLabels {
                        consumergroup: id.clone(),
                    })
                    .inc_by(l);
            }
        }
    }
    reg.register(
        "kafka_coordinator_group_groupmetadatamanager_numgroups",
        "Groups this broker coordinates, by state",
        by_state,
    );
    let rebalances: Counter = Counter::default();
    rebalances.inc_by(broker.groups.completed_rebalances());
    reg.register(
        "kafka_coordinator_group_completed_rebalances",
        "Rebalances completed by the groups this broker coordinates (a new generation with members)",
        rebalances,
    );
    reg.register(
        "kafka_consumergroup_members",
        "Members of a group coordinated here",
        members,
    );
    reg.register(
        "kafka_consumergroup_current_offset",
        "A group's committed offset, by partition (groups coordinated here)",
        current,
    );
    reg.register(
        "kafka_consumergroup_lag",
        "Records between a group's committed offset and the high watermark, by partition",
        lag,
    );
    reg.register(
        "kafka_consumergroup_lag_sum",
        "A group's lag summed over its partitions",
        lag_sum,
    );

    // Quotas (Strom's own names: Kafka keeps these per user and client id).
    let throttled = Family::<QuotaLabels, Counter>::default();
    let throttle_ms = Family::<QuotaLabels, Counter>::default();
    for (quota, n, ms) in broker.quotas.throttle_stats() {
        throttled.get_or_create(&QuotaLabels { quota }).inc_by(n);
        throttle_ms.get_or_create(&QuotaLabels { quota }).inc_by(ms);
    }
    reg.register(
        "strom_quota_throttled",
        "Requests (or, for quota=\"connection\", connections) throttled for going over a client quota",
        throttled,
    );
    reg.register(
        "strom_quota_throttle_time_ms",
        "Throttle time handed out for going over a client quota",
        throttle_ms,
    );

    // The storage engine.
    reg.register(
        "strom_rocksdb_property",
        "RocksDB properties of the partition log store (rocksdb.* names), the writes that waited for memtable room (strom.memtable-waits, strom.memtable-wait-micros), and how often RocksDB found writes stopped or slowed (strom.write-stall-stops, strom.write-stall-delays)",
        named_gauges("property", broker.logs.engine_stats()),
    );

    // The allocator: jemalloc is the whole process's malloc, RocksDB's memtables and block
    // cache included, so this splits the resident memory into what is in use and what is
    // held for reuse.
    reg.register(
        "strom_allocator_bytes",
        "jemalloc's totals (stats.* names): allocated, active, metadata, resident, mapped, retained",
        named_gauges("stat", allocator_stats()),
    );

    // Metadata as this broker sees it.
    gauge(
        &mut reg,
        "strom_metadata_offset",
        "Metadata records this broker has applied",
        image.offset as i64,
    );
    reg
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::produce_response::{
        PartitionProduceResponse, TopicProduceResponse,
    };
    use kafka_protocol::messages::ProduceResponse;
    use kafka_protocol::ResponseError;

    fn text(m: &Metrics) -> String {
        let mut out = String::new();
        encode_registry(&mut out, &m.registry).expect("encode");
        out
    }

    fn produce_answer() -> ResponseKind {
        let partition = |index, error: Option<ResponseError>| {
            PartitionProduceResponse::default()
                .with_index(index)
                .with_error_code(error.map_or(0, |e| e.code()))
        };
        ResponseKind::Produce(ProduceResponse::default().with_responses(vec![
            TopicProduceResponse::default().with_partition_responses(vec![
                partition(0, None),
                partition(1, Some(ResponseError::NotLeaderOrFollower)),
                partition(2, Some(ResponseError::NotLeaderOrFollower)),
            ]),
        ]))
    }

    #[tokio::test]
    async fn a_request_counts_its_time_its_wait_and_each_failed_partition() {
        let m = Metrics::new(true);
        let started = Instant::now();
        let ((), remote) = with_remote_time(async {
            let since = Instant::now();
            tokio::time::sleep(Duration::from_millis(20)).await;
            waited(since);
        })
        .await;
        assert!(remote >= Duration::from_millis(20), "{remote:?}");
        m.request("Produce", started, remote, Some(&produce_answer()));
        m.request("Produce", Instant::now(), Duration::ZERO, None);
        m.produced("orders", 10, 1000);
        let t = text(&m);
        for line in [
            "kafka_network_requestmetrics_requests_total{request=\"Produce\"} 2",
            "kafka_network_requestmetrics_errors_total{request=\"Produce\",error=\"NOT_LEADER_OR_FOLLOWER\"} 2",
            "kafka_network_requestmetrics_totaltimems_count{request=\"Produce\"} 2",
            "kafka_network_requestmetrics_remotetimems_bucket{le=\"10.0\",request=\"Produce\"} 1",
            "kafka_server_brokertopicmetrics_bytesin_total{topic=\"orders\"} 1000",
            "kafka_server_brokertopicmetrics_messagesin_total{topic=\"orders\"} 10",
        ] {
            assert!(t.contains(line), "missing {line} in\n{t}");
        }
        // 20 ms of the first request were remote: it sits above the 10 ms bucket.
        assert!(
            t.contains("kafka_network_requestmetrics_remotetimems_bucket{le=\"25.0\",request=\"Produce\"} 2")
                || t.contains("kafka_network_requestmetrics_remotetimems_bucket{le=\"50.0\",request=\"Produce\"} 2"),
            "{t}"
        );
    }

    #[test]
    fn named_gauges_carry_each_name_in_their_label() {
        let mut reg = Registry::default();
        reg.register(
            "strom_x",
            "x",
            named_gauges("property", vec![("rocksdb.a", 5), ("rocksdb.b", u64::MAX)]),
        );
        let mut out = String::new();
        encode_registry(&mut out, &reg).expect("encode");
        assert!(out.contains("strom_x{property=\"rocksdb.a\"} 5\n"), "{out}");
        // Past i64 a value saturates rather than wrapping negative.
        let saturated = format!("strom_x{{property=\"rocksdb.b\"}} {}\n", i64::MAX);
        assert!(out.contains(&saturated), "{out}");
    }

    #[test]
    fn waiting_outside_a_request_is_not_counted_anywhere() {
        waited(Instant::now());
    }

    #[test]
    fn disabled_metrics_record_nothing_per_request() {
        let m = Metrics::new(false);
        m.request(
            "Produce",
            Instant::now(),
            Duration::ZERO,
            Some(&produce_answer()),
        );
        m.produced("orders", 10, 1000);
        m.fetched("orders", 1000);
        let t = text(&m);
        assert!(!t.contains("request=\"Produce\""), "{t}");
        assert!(!t.contains("topic=\"orders\""), "{t}");
    }

    #[test]
    fn open_connections_are_counted_until_they_close() {
        let m = Metrics::new(true);
        let a = m.connection_opened("PLAINTEXT");
        let b = m.connection_opened("PLAINTEXT");
        drop(a);
        let t = text(&m);
        assert!(
            t.contains(
                "kafka_server_socketservermetrics_connection_count{listener=\"PLAINTEXT\"} 1"
            ),
            "{t}"
        );
        assert!(
            t.contains(
                "kafka_server_socketservermetrics_connection_creation_total{listener=\"PLAINTEXT\"} 2"
            ),
            "{t}"
        );
        drop(b);
    }
}
