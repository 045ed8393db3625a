//! A controller's HTTP server: Raft RPC and controller RPC (bincode), the metadata long-poll
//! for brokers, and the public JSON API.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::warn;

use super::log_store::{decode, encode};
use super::rpc::{ControllerError, ControllerRequest};
use super::types::TypeConfig;
use super::QuorumNode;
use crate::{LoggedRecord, MetadataImage, MetadataRecord, TopicImage};

/// Marks a request one controller forwarded to another (never forwarded twice).
pub const FORWARDED_HEADER: &str = "x-strom-forwarded";
/// Longest a metadata long-poll may wait.
const MAX_WAIT: Duration = Duration::from_secs(30);

pub fn router(node: Arc<QuorumNode>) -> Router {
    Router::new()
        .route("/raft/append", post(raft_append))
        .route("/raft/vote", post(raft_vote))
        .route("/raft/snapshot", post(raft_snapshot))
        .route("/controller", post(controller))
        .route("/controller/records", get(records))
        .route("/v1/quorum/voters", get(voters).post(add_voter))
        .route(
            "/v1/quorum/voters/{id}",
            axum::routing::delete(remove_voter),
        )
        .route("/v1/cluster", get(cluster))
        .route("/v1/brokers", get(brokers))
        .route("/v1/topics", get(topics))
        .route("/v1/topics/{name}", get(topic))
        .route("/v1/metadata/events", get(events))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(|| async {
            json_error(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such endpoint".into(),
            )
        })
        .with_state(node)
}

pub async fn serve(
    node: Arc<QuorumNode>,
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let stop = async move {
        let _ = shutdown.changed().await;
    };
    let result = match tls {
        None => {
            axum::serve(listener, router(node))
                .with_graceful_shutdown(stop)
                .await
        }
        Some(config) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(config);
            match super::tls::TlsListener::new(listener, Arc::new(move || acceptor.clone())) {
                Ok(l) => {
                    axum::serve(l, router(node))
                        .with_graceful_shutdown(stop)
                        .await
                }
                Err(e) => Err(e),
            }
        }
    };
    if let Err(e) = result {
        warn!(error = %e, "controller http server failed");
    }
}

/// Liveness: the process answers HTTP.
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Readiness: 200 when this controller can serve, 503 with the failing checks otherwise.
async fn readyz(State(node): State<Arc<QuorumNode>>) -> Response {
    let r = node.readiness();
    readiness_response(r.ready, json!(r))
}

/// A `/readyz` answer (controllers and brokers): 200 `{"status": "ready", "checks": ...}`,
/// or 503 with `"not_ready"` and the same checks.
pub fn readiness_response(ready: bool, checks: Value) -> Response {
    let (status, word) = if ready {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not_ready")
    };
    (status, Json(json!({"status": word, "checks": checks}))).into_response()
}

/// A JSON error: `{"error": {"code", "message"}}` with an HTTP status.
pub fn json_error(status: StatusCode, code: &str, message: String) -> Response {
    (
        status,
        Json(json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

fn bincode_response<T: Serialize>(v: &T) -> Response {
    match encode(v) {
        Ok(b) => ([(header::CONTENT_TYPE, "application/octet-stream")], b).into_response(),
        Err(e) => json_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "encode_failed",
            e.to_string(),
        ),
    }
}

fn bad_body(e: impl std::fmt::Display) -> Response {
    json_error(
        StatusCode::BAD_REQUEST,
        "bad_request",
        format!("undecodable body: {e}"),
    )
}

async fn raft_append(State(node): State<Arc<QuorumNode>>, body: Bytes) -> Response {
    match decode::<AppendEntriesRequest<TypeConfig>>(&body) {
        Ok(req) => bincode_response(&node.raft.append_entries(req).await),
        Err(e) => bad_body(e),
    }
}

async fn raft_vote(State(node): State<Arc<QuorumNode>>, body: Bytes) -> Response {
    match decode::<VoteRequest<u64>>(&body) {
        Ok(req) => bincode_response(&node.raft.vote(req).await),
        Err(e) => bad_body(e),
    }
}

async fn raft_snapshot(State(node): State<Arc<QuorumNode>>, body: Bytes) -> Response {
    match decode::<InstallSnapshotRequest<TypeConfig>>(&body) {
        Ok(req) => bincode_response(&node.raft.install_snapshot(req).await),
        Err(e) => bad_body(e),
    }
}

async fn controller(
    State(node): State<Arc<QuorumNode>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let req: ControllerRequest = match decode(&body) {
        Ok(r) => r,
        Err(e) => return bad_body(e),
    };
    let forwarded = headers.contains_key(FORWARDED_HEADER);
    let result: Result<_, ControllerError> = node.handle(req, forwarded).await;
    bincode_response(&result)
}

/// `GET /v1/quorum/voters`: the voters of the current membership.
async fn voters(State(node): State<Arc<QuorumNode>>) -> Json<Value> {
    Json(voters_json(&node))
}

fn voters_json(node: &QuorumNode) -> Value {
    json!({
        "voters": node.voters().into_iter().map(|(id, addr)| json!({"id": id, "addr": addr}))
            .collect::<Vec<_>>(),
    })
}

#[derive(Debug, Deserialize)]
struct NewVoter {
    id: u64,
    addr: String,
}

/// `POST /v1/quorum/voters {"id", "addr"}` (KIP-853 AddRaftVoter), through the active
/// controller: answers once the new controller is a voter.
async fn add_voter(State(node): State<Arc<QuorumNode>>, body: Bytes) -> Response {
    let v: NewVoter = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return bad_body(e),
    };
    change_voters(
        &node,
        ControllerRequest::AddVoter {
            id: v.id,
            addr: v.addr,
        },
    )
    .await
}

/// `DELETE /v1/quorum/voters/{id}` (KIP-853 RemoveRaftVoter), through the active controller.
async fn remove_voter(State(node): State<Arc<QuorumNode>>, Path(id): Path<u64>) -> Response {
    change_voters(&node, ControllerRequest::RemoveVoter { id }).await
}

async fn change_voters(node: &QuorumNode, req: ControllerRequest) -> Response {
    match node.handle(req, false).await {
        // The voters as the active controller has them once the change committed.
        Ok(super::rpc::ControllerResponse::Voters { result: Ok(voters) }) => Json(json!({
            "voters": voters.into_iter().map(|(id, addr)| json!({"id": id, "addr": addr}))
                .collect::<Vec<_>>(),
        }))
        .into_response(),
        Ok(super::rpc::ControllerResponse::Voters { result: Err(e) }) => {
            json_error(StatusCode::BAD_REQUEST, e.code(), e.to_string())
        }
        Ok(other) => json_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "unexpected_answer",
            format!("{other:?}"),
        ),
        Err(e) => json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "controller_error",
            e.to_string(),
        ),
    }
}

#[derive(Debug, Deserialize)]
struct RecordsQuery {
    #[serde(default)]
    from: u64,
    #[serde(default)]
    wait_ms: u64,
    #[serde(default = "default_limit")]
    limit: usize,
}

fn default_limit() -> usize {
    1000
}

/// Records from `from` on; when there are none yet, waits up to `wait_ms` for some.
async fn records(State(node): State<Arc<QuorumNode>>, Query(q): Query<RecordsQuery>) -> Response {
    let limit = q.limit.clamp(1, 10_000);
    let mut images = node.state.subscribe();
    let mut out = node.state.records(q.from, limit);
    if out.is_empty() && q.wait_ms > 0 {
        let wait = Duration::from_millis(q.wait_ms).min(MAX_WAIT);
        let _ = tokio::time::timeout(wait, async {
            while images.changed().await.is_ok() {
                if images.borrow_and_update().offset > q.from {
                    break;
                }
            }
        })
        .await;
        out = node.state.records(q.from, limit);
    }
    bincode_response(&out)
}

async fn cluster(State(node): State<Arc<QuorumNode>>) -> Json<Value> {
    let m = node.raft.metrics().borrow().clone();
    let image = node.image();
    let leader = m.current_leader;
    Json(json!({
        "cluster_id": image.cluster_id,
        "node_id": node.id,
        "controller_id": leader,
        "metadata_offset": image.offset,
        "raft": {
            "state": format!("{:?}", m.state),
            "term": m.current_term,
            "last_log_index": m.last_log_index,
            "last_applied": m.last_applied.map(|l| l.index),
        },
        "voters": node.voters().into_iter().map(|(id, addr)| json!({
            "id": id,
            "addr": addr,
            "role": if Some(id) == leader { "leader" } else { "follower" },
        })).collect::<Vec<_>>(),
    }))
}

async fn brokers(State(node): State<Arc<QuorumNode>>) -> Json<Value> {
    let ages = node.heartbeat_ages();
    let leader = node.is_leader();
    let mut brokers = brokers_json(&node.image(), |id| {
        if leader {
            ages.get(&id).copied()
        } else {
            None
        }
    });
    // What each broker last reported of its log directory (the active controller's view).
    let reports = if leader {
        node.log_dir_reports()
    } else {
        Default::default()
    };
    if let Some(list) = brokers.as_array_mut() {
        for b in list {
            let id = b["id"].as_i64().unwrap_or(-1) as i32;
            b["log_dir"] = reports.get(&id).map_or(Value::Null, |r| {
                json!({
                    "used_bytes": r.used_bytes(),
                    "capacity_bytes": r.capacity_bytes,
                    "partitions": r.partitions.len(),
                    "fs_total_bytes": r.fs_total_bytes,
                    "fs_usable_bytes": r.fs_usable_bytes,
                })
            });
        }
    }
    Json(brokers)
}

/// The brokers of an image as JSON; `heartbeat_age_ms` where known.
pub fn brokers_json(image: &MetadataImage, heartbeat_age_ms: impl Fn(i32) -> Option<u64>) -> Value {
    json!(image
        .brokers
        .values()
        .map(|b| json!({
            "id": b.broker_id,
            "state": if b.fenced { "fenced" } else { "alive" },
            "incarnation": b.incarnation,
            "endpoints": b.endpoints,
            "rack": b.rack,
            "last_heartbeat_ms_ago": heartbeat_age_ms(b.broker_id),
        }))
        .collect::<Vec<_>>())
}

/// The topic list of an image as JSON.
pub fn topics_json(image: &MetadataImage) -> Value {
    json!(image
        .topics()
        .map(|t| json!({
            "name": t.name,
            "topic_id": t.topic_id,
            "partitions": t.partitions.len(),
            "replication_factor": t.partitions.first().map_or(0, |p| p.replicas.len()),
            "internal": t.is_internal(),
        }))
        .collect::<Vec<_>>())
}

/// One topic as JSON; `extra` adds fields to each partition (a broker adds log offsets).
pub fn topic_json(t: &TopicImage, extra: impl Fn(u32) -> Option<Value>) -> Value {
    let partitions: Vec<Value> = t
        .partitions
        .iter()
        .map(|p| {
            let mut v = json!({
                "partition": p.partition,
                "leader": p.leader,
                "replicas": p.replicas,
                "isr": p.isr,
                "leader_epoch": p.leader_epoch,
                "partition_epoch": p.partition_epoch,
                "adding_replicas": p.adding_replicas,
                "removing_replicas": p.removing_replicas,
            });
            if let (Some(Value::Object(add)), Value::Object(base)) = (extra(p.partition), &mut v) {
                base.extend(add);
            }
            v
        })
        .collect();
    json!({
        "name": t.name,
        "topic_id": t.topic_id,
        "internal": t.is_internal(),
        "configs": t.configs,
        "partitions": partitions,
    })
}

async fn topics(State(node): State<Arc<QuorumNode>>) -> Json<Value> {
    Json(topics_json(&node.image()))
}

async fn topic(State(node): State<Arc<QuorumNode>>, Path(name): Path<String>) -> Response {
    match node.image().topic(&name) {
        Some(t) => Json(topic_json(t, |_| None)).into_response(),
        None => json_error(
            StatusCode::NOT_FOUND,
            "unknown_topic",
            format!("topic '{name}' does not exist"),
        ),
    }
}

#[derive(Debug, Deserialize)]
pub struct EventsQuery {
    #[serde(default)]
    pub from: u64,
    #[serde(default = "default_limit")]
    pub limit: usize,
}

/// A page of the metadata event history.
#[derive(Debug, Serialize)]
pub struct EventsPage {
    pub next: u64,
    pub events: Vec<LoggedRecord>,
}

impl EventsPage {
    /// A page of the event stream. SCRAM credentials are shown without their salt and keys:
    /// the stream is for watching the cluster, not for taking its secrets away.
    pub fn new(from: u64, mut events: Vec<LoggedRecord>) -> Self {
        for e in &mut events {
            if let MetadataRecord::UserScramCredential {
                salt,
                stored_key,
                server_key,
                ..
            } = &mut e.record
            {
                salt.clear();
                stored_key.clear();
                server_key.clear();
            }
        }
        Self {
            next: events.last().map_or(from, |e| e.offset + 1),
            events,
        }
    }
}

async fn events(
    State(node): State<Arc<QuorumNode>>,
    Query(q): Query<EventsQuery>,
) -> Json<EventsPage> {
    Json(EventsPage::new(
        q.from,
        node.state.records(q.from, q.limit.min(10_000)),
    ))
}

/// The controller's `/metrics` (OpenMetrics text, `prometheus-client`), with the names the
/// Prometheus JMX exporter's common rules give Kafka's controller and raft metrics. Everything
/// is read from the node at scrape time.
async fn metrics(State(node): State<Arc<QuorumNode>>) -> impl IntoResponse {
    use prometheus_client::encoding::text::encode;
    use prometheus_client::metrics::gauge::Gauge;
    use prometheus_client::registry::Registry;

    let m = node.raft.metrics().borrow().clone();
    let image = node.image();
    let active: Vec<_> = image.brokers.values().filter(|b| !b.fenced).collect();
    let partitions = || image.topics().flat_map(|t| t.partitions.iter());
    let offline = partitions()
        .filter(|p| p.leader < 0 || !active.iter().any(|b| b.broker_id == p.leader))
        .count();
    let imbalanced = partitions()
        .filter(|p| p.leader >= 0 && p.replicas.first() != Some(&p.leader))
        .count();
    let gauges: [(&str, &str, i64); 12] = [
        (
            "kafka_controller_kafkacontroller_activecontrollercount",
            "1 on the active controller (the raft leader), 0 elsewhere",
            i64::from(node.is_leader()),
        ),
        (
            "kafka_controller_kafkacontroller_globaltopiccount",
            "Topics in the metadata image",
            image.topics().count() as i64,
        ),
        (
            "kafka_controller_kafkacontroller_globalpartitioncount",
            "Partitions in the metadata image",
            partitions().count() as i64,
        ),
        (
            "kafka_controller_kafkacontroller_offlinepartitionscount",
            "Partitions without a leader on an active broker",
            offline as i64,
        ),
        (
            "kafka_controller_kafkacontroller_preferredreplicaimbalancecount",
            "Partitions led by a replica other than their first (preferred) one",
            imbalanced as i64,
        ),
        (
            "kafka_controller_kafkacontroller_activebrokercount",
            "Registered brokers that are not fenced",
            active.len() as i64,
        ),
        (
            "kafka_controller_kafkacontroller_fencedbrokercount",
            "Registered brokers that are fenced",
            (image.brokers.len() - active.len()) as i64,
        ),
        (
            "kafka_server_raftmetrics_current_leader",
            "The raft leader this node knows (-1 when none)",
            m.current_leader.map_or(-1, |l| l as i64),
        ),
        (
            "kafka_server_raftmetrics_current_epoch",
            "The raft term (each election starts a new one)",
            m.current_term as i64,
        ),
        (
            "kafka_server_raftmetrics_log_end_offset",
            "Index of the last entry in this node's raft log",
            m.last_log_index.map_or(-1, |i| i as i64),
        ),
        (
            "kafka_server_raftmetrics_high_watermark",
            "Index of the last committed entry applied here",
            m.last_applied.map_or(-1, |l| l.index as i64),
        ),
        (
            "strom_metadata_offset",
            "Metadata records applied to this node's image",
            image.offset as i64,
        ),
    ];
    let mut registry = Registry::default();
    for (name, help, v) in gauges {
        let g: Gauge = Gauge::default();
        g.set(v);
        registry.register(name, help, g);
    }
    let mut out = String::new();
    let _ = encode(&mut out, &registry);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        out,
    )
}
