//! One module per Kafka API. [`handle`] turns a request frame into a response frame (or into
//! nothing, for `acks=0` produce), or into a [`ProtocolError`] that closes the connection.

mod acls;
mod api_versions;
mod authz;
mod configs;
mod consumer_groups;
mod create_partitions;
mod create_topics;
mod delete_records;
mod delete_topics;
mod describe;
mod elect_leaders;
mod features;
mod fetch;
pub mod fetch_session;
pub(crate) mod groups;
mod init_producer_id;
mod list_offsets;
mod metadata;
mod mutation_quota;
mod offset_for_leader_epoch;
mod produce;
mod quotas;
mod reassignments;
mod scram;
mod share;
mod share_offsets;
pub mod telemetry;
mod txn;
mod unregister_broker;

pub use groups::write_group_records;
pub(crate) use init_producer_id::allocate_producer_id;
pub(crate) use produce::replicated;
pub use share::persist_states;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use metadata_quorum::controller::{validate_topic_name, NewTopic};
use metadata_quorum::{MetadataImage, TopicImage};
use strom_storage::TopicPartition;

use crate::log::PartitionLog;
use tracing::{info, warn};

use crate::error::ProtocolError;
use crate::metrics;
use crate::protocol::{self, versions};
use crate::quota::{quota_user, QuotaKind};
use crate::security::Session;
use crate::Broker;

/// What a request comes to: the answer (none for an `acks=0` produce) and how long the
/// connection stays muted after it, for a client over its quota.
#[derive(Debug, Default)]
pub struct Reply {
    /// The answer's frame as the segments to write (a fetch's records are their own).
    pub frame: Option<protocol::Frame>,
    pub throttle: Duration,
}

impl Reply {
    fn now(frame: Bytes) -> Self {
        Self {
            frame: Some(vec![frame]),
            throttle: Duration::ZERO,
        }
    }
}

pub async fn handle(
    broker: &Arc<Broker>,
    session: &Session,
    frame: Bytes,
) -> Result<Reply, ProtocolError> {
    let started = Instant::now();
    let request_bytes = frame.len();
    let pre = protocol::preamble(&frame)?;
    let api_key = ApiKey::try_from(pre.api_key).map_err(|_| ProtocolError::UnknownApiKey {
        api_key: pre.api_key,
    })?;
    let Some((min, max)) = versions::supported(api_key) else {
        return Err(ProtocolError::UnsupportedApi {
            api: versions::name(api_key),
        });
    };
    if pre.version < min || pre.version > max {
        if api_key == ApiKey::ApiVersions {
            // KIP-511: answer an ApiVersions we cannot parse in v0, with our versions, so
            // the client can retry with one we speak.
            let body = ResponseKind::ApiVersions(versions::api_versions_response(
                ResponseError::UnsupportedVersion.code(),
            ));
            return protocol::encode_response(api_key, 0, pre.correlation_id, &body)
                .map(Reply::now);
        }
        return Err(ProtocolError::UnsupportedVersion {
            api: versions::name(api_key),
            version: pre.version,
            min,
            max,
        });
    }
    let request = protocol::decode_request(api_key, pre.version, frame)?;
    let version = request.version;
    let client_id = request
        .header
        .client_id
        .as_deref()
        .unwrap_or("")
        .to_string();
    let from_broker = txn::from_broker(broker, &client_id);
    let (mut body, denied) = match authz::check(broker, session, request.body, version) {
        authz::Check::Handle(body, denied) => (body, denied),
        authz::Check::Answer(response) => {
            return protocol::encode_response(api_key, version, pre.correlation_id, &response)
                .map(Reply::now)
        }
        authz::Check::Refuse(reason) => {
            return Err(ProtocolError::Unauthorized {
                api: versions::name(api_key),
                reason,
            })
        }
    };
    let quotas = broker.image().quotas.clone();
    let user = quota_user(&session.principal);
    // Kafka's throttle-exempt requests: ApiVersions and what only brokers send.
    let exempt = quotas.is_empty()
        || match &body {
            RequestKind::ApiVersions(_) | RequestKind::WriteTxnMarkers(_) => true,
            RequestKind::Fetch(r) => r.replica_id.0 >= 0,
            _ => false,
        };
    if let (RequestKind::Fetch(r), false) = (&mut body, exempt) {
        if let Some(most) = broker.quotas.fetch_window_bytes(&quotas, user, &client_id) {
            r.max_bytes = if r.max_bytes <= 0 {
                most
            } else {
                r.max_bytes.min(most)
            };
        }
    }
    // Kafka's request metrics name follower and consumer fetches apart.
    let (request_name, follower) = match &body {
        RequestKind::Fetch(r) if r.replica_id.0 >= 0 => ("FetchFollower", true),
        RequestKind::Fetch(_) => ("FetchConsumer", false),
        _ => (versions::name(api_key), false),
    };
    let wanted_ops = authz::WantedOps::of(&body, version);
    let mutator = mutation_quota::Mutator {
        broker,
        quotas: &quotas,
        user,
        client_id: &client_id,
    };
    let refused = if exempt {
        mutation_quota::Refused::default()
    } else {
        mutator.before(&mut body, version)
    };
    // A span per request, exported with --otlp-endpoint (strom-telemetry); without it no
    // layer takes TRACE spans of this target and creating it costs next to nothing.
    let span = tracing::span!(
        target: strom_telemetry::REQUEST_TARGET,
        tracing::Level::TRACE,
        "kafka.request",
        otel.name = request_name,
        otel.kind = "server",
        kafka.api = request_name,
        kafka.api_version = version,
        kafka.correlation_id = pre.correlation_id,
        kafka.client_id = client_id.as_str(),
        kafka.principal = session.principal.as_str(),
        kafka.listener = &*session.listener,
        kafka.request_bytes = request_bytes as i64,
        net.peer = %session.peer,
    );
    let handled = metrics::with_remote_time(tracing::Instrument::instrument(
        dispatch(broker, session, body, version, &client_id, from_broker),
        span,
    ));
    // Request time is measured only where a quota may need it, not on the common path.
    let ((response, remote), busy) = if exempt {
        (handled.await, Duration::ZERO)
    } else {
        Timed::new(handled).await
    };
    let mut response = response?;
    let mut throttle = Duration::ZERO;
    if let (Some(r), false) = (response.as_mut(), exempt) {
        throttle = mutator.after(r, refused);
    }
    if !exempt {
        let now = broker.quotas.now_ms();
        let mut record = |kind, value| {
            let t = broker
                .quotas
                .record(&quotas, kind, user, &client_id, value, now);
            throttle = throttle.max(t);
            t
        };
        match (api_key, response.as_mut()) {
            (ApiKey::Produce, _) => {
                record(QuotaKind::Produce, request_bytes as f64);
            }
            (ApiKey::Fetch, Some(ResponseKind::Fetch(r))) => {
                let bytes = fetch::record_bytes(r) as f64;
                if !record(QuotaKind::Fetch, bytes).is_zero() {
                    // Over the quota: the data stays unsent, and uncounted (Kafka's
                    // throttled fetch answer is empty).
                    broker
                        .quotas
                        .unrecord(&quotas, QuotaKind::Fetch, user, &client_id, bytes, now);
                    // Its fetch session goes too: the answer the session remembers as
                    // sent was not, and the client starts again with a full fetch.
                    broker.fetch_sessions.close(r.session_id);
                    *r = kafka_protocol::messages::FetchResponse::default();
                }
            }
            _ => {}
        }
        // Kafka counts request time in percent of one thread: 10 ms of work is 1.
        record(QuotaKind::Request, busy.as_nanos() as f64 * 1e-7);
    }
    record_metrics(
        broker,
        request_name,
        follower,
        started,
        remote,
        response.as_ref(),
    );
    let Some(mut response) = response else {
        return Ok(Reply {
            frame: None,
            throttle,
        });
    };
    if !throttle.is_zero() {
        set_throttle_time(&mut response, throttle);
    }
    authz::filter_response(broker, session, &mut response);
    authz::merge(&mut response, denied, version);
    authz::fill_operations(broker, session, &mut response, wanted_ops);
    let frame = protocol::encode_response_frame(api_key, version, pre.correlation_id, response)?;
    Ok(Reply {
        frame: Some(frame),
        throttle,
    })
}

/// Request metrics, and for a fetch the bytes it sends (after any quota emptied it).
fn record_metrics(
    broker: &Broker,
    request: &'static str,
    follower: bool,
    started: Instant,
    remote: Duration,
    response: Option<&ResponseKind>,
) {
    if !broker.metrics.enabled() {
        return;
    }
    broker.metrics.request(request, started, remote, response);
    let Some(ResponseKind::Fetch(r)) = response else {
        return;
    };
    if follower {
        broker.metrics.replicated_out(fetch::record_bytes(r) as u64);
        return;
    }
    let image = broker.image();
    for t in &r.responses {
        let bytes: usize = t
            .partitions
            .iter()
            .map(|p| p.records.as_ref().map_or(0, |b| b.len()))
            .sum();
        if bytes == 0 {
            continue;
        }
        // Fetch v13+ names topics by id.
        let name = if t.topic.is_empty() {
            image.topic_by_id(&t.topic_id).map(|t| t.name.as_str())
        } else {
            Some(t.topic.as_str())
        };
        if let Some(name) = name {
            broker.metrics.fetched(name, bytes as u64);
        }
    }
}

/// Hands a decoded, authorised request to its API's handler; `None` for an `acks=0` produce.
async fn dispatch(
    broker: &Arc<Broker>,
    session: &Session,
    body: RequestKind,
    version: i16,
    client_id: &str,
    from_broker: bool,
) -> Result<Option<ResponseKind>, ProtocolError> {
    let response = match body {
        RequestKind::ApiVersions(_) => ResponseKind::ApiVersions(api_versions::handle(broker)),
        RequestKind::Metadata(r) => {
            ResponseKind::Metadata(metadata::handle(broker, r, version, &session.listener).await)
        }
        RequestKind::Produce(r) => {
            let acks = r.acks;
            let response = produce::handle(broker, r, version).await;
            if acks == 0 {
                return Ok(None);
            }
            ResponseKind::Produce(response)
        }
        RequestKind::Fetch(mut r) => {
            // KIP-227: an incremental fetch reads its whole session; the answer keeps what
            // changed. No sessions under the authorizer (each fetch is authorised whole).
            match broker
                .fetch_sessions
                .begin(&mut r, version, !broker.authorizer.enabled)
            {
                Err(code) => ResponseKind::Fetch(
                    kafka_protocol::messages::FetchResponse::default().with_error_code(code),
                ),
                Ok(step) => {
                    let mut response = fetch::handle(broker, r, version).await;
                    if response.error_code == 0 {
                        broker.fetch_sessions.finish(&step, &mut response);
                    } else if let fetch_session::Step::Full(id, _) = step {
                        // A full fetch refused whole opened nothing.
                        broker.fetch_sessions.close(id);
                    }
                    ResponseKind::Fetch(response)
                }
            }
        }
        RequestKind::OffsetForLeaderEpoch(r) => {
            ResponseKind::OffsetForLeaderEpoch(offset_for_leader_epoch::handle(broker, r, version))
        }
        RequestKind::ListOffsets(r) => {
            ResponseKind::ListOffsets(list_offsets::handle(broker, r, version))
        }
        RequestKind::CreateTopics(r) => {
            ResponseKind::CreateTopics(create_topics::handle(broker, r, version).await)
        }
        RequestKind::DescribeConfigs(r) => {
            ResponseKind::DescribeConfigs(configs::describe(broker, r, version))
        }
        RequestKind::AlterConfigs(r) => {
            ResponseKind::AlterConfigs(configs::alter(broker, r, version).await)
        }
        RequestKind::IncrementalAlterConfigs(r) => ResponseKind::IncrementalAlterConfigs(
            configs::incremental_alter(broker, r, version).await,
        ),
        RequestKind::CreatePartitions(r) => {
            ResponseKind::CreatePartitions(create_partitions::handle(broker, r, version).await)
        }
        RequestKind::DeleteRecords(r) => {
            ResponseKind::DeleteRecords(delete_records::handle(broker, r, version))
        }
        RequestKind::FindCoordinator(r) => ResponseKind::FindCoordinator(
            groups::find_coordinator(broker, r, version, &session.listener).await,
        ),
        RequestKind::JoinGroup(r) => {
            ResponseKind::JoinGroup(groups::join(broker, r, version, client_id).await)
        }
        RequestKind::SyncGroup(r) => {
            ResponseKind::SyncGroup(groups::sync(broker, r, version).await)
        }
        RequestKind::Heartbeat(r) => ResponseKind::Heartbeat(groups::heartbeat(broker, r, version)),
        RequestKind::LeaveGroup(r) => ResponseKind::LeaveGroup(groups::leave(broker, r, version)),
        RequestKind::OffsetCommit(r) => {
            ResponseKind::OffsetCommit(groups::offset_commit(broker, r, version, from_broker).await)
        }
        RequestKind::OffsetFetch(r) => {
            ResponseKind::OffsetFetch(groups::offset_fetch(broker, r, version))
        }
        RequestKind::ConsumerGroupHeartbeat(r) => ResponseKind::ConsumerGroupHeartbeat(
            consumer_groups::heartbeat(broker, r, version, client_id, session),
        ),
        RequestKind::ConsumerGroupDescribe(r) => {
            ResponseKind::ConsumerGroupDescribe(consumer_groups::describe(broker, r, version))
        }
        RequestKind::ShareGroupHeartbeat(r) => ResponseKind::ShareGroupHeartbeat(share::heartbeat(
            broker,
            r,
            client_id,
            &session.peer.ip().to_string(),
        )),
        RequestKind::ShareGroupDescribe(r) => {
            ResponseKind::ShareGroupDescribe(share::describe(broker, r))
        }
        RequestKind::ShareFetch(r) => {
            ResponseKind::ShareFetch(share::fetch(broker, r, &session.listener).await)
        }
        RequestKind::DescribeShareGroupOffsets(r) => {
            ResponseKind::DescribeShareGroupOffsets(share_offsets::describe_offsets(broker, r))
        }
        RequestKind::AlterShareGroupOffsets(r) => {
            ResponseKind::AlterShareGroupOffsets(share_offsets::alter_offsets(broker, r).await)
        }
        RequestKind::DeleteShareGroupOffsets(r) => {
            ResponseKind::DeleteShareGroupOffsets(share_offsets::delete_offsets(broker, r).await)
        }
        RequestKind::InitializeShareGroupState(r) => ResponseKind::InitializeShareGroupState(
            share_offsets::initialize_state(broker, r, from_broker).await,
        ),
        RequestKind::DeleteShareGroupState(r) => ResponseKind::DeleteShareGroupState(
            share_offsets::delete_state(broker, r, from_broker).await,
        ),
        RequestKind::ShareAcknowledge(r) => {
            ResponseKind::ShareAcknowledge(share::acknowledge_request(broker, r).await)
        }
        RequestKind::GetTelemetrySubscriptions(r) => {
            ResponseKind::GetTelemetrySubscriptions(telemetry::get_subscriptions(broker, r))
        }
        RequestKind::PushTelemetry(r) => ResponseKind::PushTelemetry(telemetry::push(broker, r)),
        RequestKind::ListConfigResources(r) => {
            ResponseKind::ListConfigResources(telemetry::list_config_resources(broker, r, version))
        }
        RequestKind::ListGroups(r) => {
            ResponseKind::ListGroups(groups::list_groups(broker, r, version))
        }
        RequestKind::DescribeGroups(r) => {
            ResponseKind::DescribeGroups(groups::describe_groups(broker, r, version))
        }
        RequestKind::DeleteGroups(r) => {
            ResponseKind::DeleteGroups(groups::delete_groups(broker, r, version))
        }
        RequestKind::OffsetDelete(r) => {
            ResponseKind::OffsetDelete(groups::offset_delete(broker, r, version))
        }
        RequestKind::InitProducerId(r) => {
            ResponseKind::InitProducerId(init_producer_id::handle(broker, r, version).await)
        }
        RequestKind::DeleteTopics(r) => {
            ResponseKind::DeleteTopics(delete_topics::handle(broker, r, version).await)
        }
        RequestKind::AddPartitionsToTxn(r) => ResponseKind::AddPartitionsToTxn(
            txn::add_partitions(broker, r, version, from_broker).await,
        ),
        RequestKind::AddOffsetsToTxn(r) => {
            ResponseKind::AddOffsetsToTxn(txn::add_offsets(broker, r, version).await)
        }
        RequestKind::EndTxn(r) => ResponseKind::EndTxn(txn::end(broker, r, version).await),
        RequestKind::WriteTxnMarkers(r) => {
            ResponseKind::WriteTxnMarkers(txn::write_markers(broker, r, version, from_broker).await)
        }
        RequestKind::TxnOffsetCommit(r) => {
            ResponseKind::TxnOffsetCommit(txn::offset_commit(broker, r, version).await)
        }
        RequestKind::DescribeTransactions(r) => {
            ResponseKind::DescribeTransactions(txn::describe_transactions(broker, r, version))
        }
        RequestKind::ListTransactions(r) => {
            ResponseKind::ListTransactions(txn::list_transactions(broker, r, version))
        }
        RequestKind::DescribeCluster(r) => ResponseKind::DescribeCluster(
            describe::describe_cluster(broker, r, version, &session.listener),
        ),
        RequestKind::DescribeTopicPartitions(r) => ResponseKind::DescribeTopicPartitions(
            describe::describe_topic_partitions(broker, r, version),
        ),
        RequestKind::ElectLeaders(r) => {
            ResponseKind::ElectLeaders(elect_leaders::handle(broker, r, version).await)
        }
        RequestKind::AlterPartitionReassignments(r) => ResponseKind::AlterPartitionReassignments(
            reassignments::alter(broker, r, version).await,
        ),
        RequestKind::ListPartitionReassignments(r) => {
            ResponseKind::ListPartitionReassignments(reassignments::list(broker, r, version))
        }
        RequestKind::UpdateFeatures(r) => {
            ResponseKind::UpdateFeatures(features::handle(broker, r, version).await)
        }
        RequestKind::UnregisterBroker(r) => {
            ResponseKind::UnregisterBroker(unregister_broker::handle(broker, r, version).await)
        }
        RequestKind::DescribeQuorum(r) => {
            ResponseKind::DescribeQuorum(describe::describe_quorum(broker, r, version).await)
        }
        RequestKind::DescribeLogDirs(r) => {
            ResponseKind::DescribeLogDirs(describe::describe_log_dirs(broker, r, version))
        }
        RequestKind::CreateAcls(r) => {
            ResponseKind::CreateAcls(acls::create(broker, r, version).await)
        }
        RequestKind::DescribeAcls(r) => {
            ResponseKind::DescribeAcls(acls::describe(broker, r, version))
        }
        RequestKind::DeleteAcls(r) => {
            ResponseKind::DeleteAcls(acls::delete(broker, r, version).await)
        }
        RequestKind::DescribeUserScramCredentials(r) => {
            ResponseKind::DescribeUserScramCredentials(scram::describe(broker, r, version))
        }
        RequestKind::AlterUserScramCredentials(r) => {
            ResponseKind::AlterUserScramCredentials(scram::alter(broker, r, version).await)
        }
        RequestKind::SaslHandshake(_) | RequestKind::SaslAuthenticate(_) => {
            // On a listener without SASL (SASL listeners answer these before the handlers).
            return Err(ProtocolError::UnsupportedApi {
                api: "SASL on a listener without SASL",
            });
        }
        RequestKind::DescribeProducers(r) => {
            ResponseKind::DescribeProducers(txn::describe_producers(broker, r, version))
        }
        RequestKind::DescribeClientQuotas(r) => {
            ResponseKind::DescribeClientQuotas(quotas::describe(broker, r, version))
        }
        RequestKind::AlterClientQuotas(r) => {
            ResponseKind::AlterClientQuotas(quotas::alter(broker, r, version).await)
        }
        _ => {
            return Err(ProtocolError::UnsupportedApi {
                api: "an API this broker does not serve",
            })
        }
    };
    Ok(Some(response))
}

/// A future that counts the time spent polling it: the time its request kept a thread busy
/// (Kafka's request time), not the time it waited for replication or data.
struct Timed<F> {
    inner: Pin<Box<F>>,
    busy: Duration,
}

impl<F: Future> Timed<F> {
    fn new(inner: F) -> Self {
        Self {
            inner: Box::pin(inner),
            busy: Duration::ZERO,
        }
    }
}

impl<F: Future> Future for Timed<F> {
    type Output = (F::Output, Duration);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let start = Instant::now();
        let polled = self.inner.as_mut().poll(cx);
        self.busy += start.elapsed();
        polled.map(|out| (out, self.busy))
    }
}

/// Sets `throttle_time_ms` on any answer that has it (KIP-219: the client waits that long
/// before its next request to this broker).
fn set_throttle_time(response: &mut ResponseKind, throttle: Duration) {
    let ms = i32::try_from(throttle.as_millis()).unwrap_or(i32::MAX);
    macro_rules! set {
        ($($kind:ident),* $(,)?) => {
            match response {
                $(ResponseKind::$kind(r) => r.throttle_time_ms = ms,)*
                _ => {}
            }
        };
    }
    set!(
        Produce,
        Fetch,
        ListOffsets,
        Metadata,
        ApiVersions,
        CreateTopics,
        DeleteTopics,
        DeleteRecords,
        DescribeConfigs,
        AlterConfigs,
        IncrementalAlterConfigs,
        CreatePartitions,
        InitProducerId,
        FindCoordinator,
        JoinGroup,
        SyncGroup,
        Heartbeat,
        LeaveGroup,
        OffsetCommit,
        OffsetFetch,
        ListGroups,
        DescribeGroups,
        DeleteGroups,
        OffsetDelete,
        OffsetForLeaderEpoch,
        AddPartitionsToTxn,
        AddOffsetsToTxn,
        EndTxn,
        TxnOffsetCommit,
        DescribeTransactions,
        ListTransactions,
        DescribeProducers,
        DescribeCluster,
        DescribeTopicPartitions,
        DescribeLogDirs,
        DescribeUserScramCredentials,
        AlterUserScramCredentials,
        CreateAcls,
        DescribeAcls,
        DeleteAcls,
        DescribeClientQuotas,
        AlterClientQuotas,
        ConsumerGroupHeartbeat,
        ConsumerGroupDescribe,
        ShareGroupHeartbeat,
        ShareGroupDescribe,
        DescribeShareGroupOffsets,
        AlterShareGroupOffsets,
        DeleteShareGroupOffsets,
        ShareFetch,
        ShareAcknowledge,
        GetTelemetrySubscriptions,
        PushTelemetry,
        ListConfigResources,
    );
}

/// Where a client on `listener` reaches broker `b`: its endpoint of that listener. A broker
/// registered before listeners had names is reached at its "kafka" endpoint on PLAINTEXT.
pub(crate) fn client_endpoint<'a>(
    b: &'a metadata_quorum::BrokerImage,
    listener: &str,
) -> Option<&'a metadata_quorum::Endpoint> {
    b.endpoint(listener).or_else(|| {
        (listener == "PLAINTEXT")
            .then(|| b.endpoint("kafka"))
            .flatten()
    })
}

/// The log of partition `index` of `topic` if this broker leads it; otherwise the error a
/// client gets (UNKNOWN_TOPIC_OR_PARTITION, NOT_LEADER_OR_FOLLOWER, or a storage error).
pub(crate) fn leader_log(
    broker: &Broker,
    image: &MetadataImage,
    topic: Option<&Arc<TopicImage>>,
    index: i32,
) -> Result<Arc<PartitionLog>, ResponseError> {
    let topic = topic.ok_or(ResponseError::UnknownTopicOrPartition)?;
    let meta = usize::try_from(index)
        .ok()
        .and_then(|i| topic.partitions.get(i))
        .ok_or(ResponseError::UnknownTopicOrPartition)?;
    if meta.leader != broker.node_id {
        return Err(ResponseError::NotLeaderOrFollower);
    }
    broker
        .logs
        .partition(image, TopicPartition::new(topic.topic_id, meta.partition))
        .map_err(|e| e.kafka_error())?
        // The image may be a moment ahead of the log's role: not leader until both agree.
        .filter(|log| log.is_leader())
        .ok_or(ResponseError::NotLeaderOrFollower)
}

/// Whether partition `partition` of `topic` exists in `image`.
pub(crate) fn partition_exists(image: &MetadataImage, topic: &str, partition: i32) -> bool {
    image
        .topic(topic)
        .is_some_and(|t| partition >= 0 && (partition as usize) < t.partitions.len())
}

pub(crate) fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

pub(crate) fn str_bytes(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

/// Creates the named topics that do not exist yet (when auto-creation is on and the name is
/// valid) and returns the image to answer from.
pub(crate) async fn auto_create(broker: &Broker, names: &[&str]) -> Arc<MetadataImage> {
    let image = broker.image();
    if !broker.config.auto_create_topics {
        return image;
    }
    let missing: Vec<NewTopic> = names
        .iter()
        .filter(|n| {
            // The coordinators make their internal topics, with their own layout.
            image.topic(n).is_none()
                && validate_topic_name(n).is_ok()
                && **n != crate::group::OFFSETS_TOPIC
                && **n != crate::txn::TRANSACTION_TOPIC
        })
        .map(|n| NewTopic {
            name: n.to_string(),
            num_partitions: -1,
            replication_factor: -1,
            ..Default::default()
        })
        .collect();
    if missing.is_empty() {
        return image;
    }
    match broker
        .controller
        .create_topics(missing.clone(), false)
        .await
    {
        Ok(results) => {
            for (t, r) in missing.iter().zip(results) {
                match r {
                    Ok(c) => {
                        info!(topic = %c.name, partitions = c.num_partitions, "topic auto-created")
                    }
                    Err(e) => warn!(topic = %t.name, error = %e, "auto-creation refused"),
                }
            }
        }
        Err(e) => warn!(error = %e, "auto-creation failed"),
    }
    broker.image()
}
