//! The HTTP/JSON API: cluster, brokers, topics with per-partition offsets, the metadata event
//! history, and Prometheus metrics. Errors are JSON: `{"error": {"code", "message"}}`.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use metadata_quorum::quorum::api;
use metadata_quorum::quorum::tls::PeerAddr;
use serde_json::{json, Value};
use strom_storage::TopicPartition;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::warn;

use crate::Broker;

/// An API error: an HTTP status plus a stable code.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({"error": {"code": self.code, "message": self.message}})),
        )
            .into_response()
    }
}

pub fn router(broker: Arc<Broker>) -> Router {
    Router::new()
        .route("/v1/cluster", get(cluster))
        .route("/v1/brokers", get(brokers))
        .route("/v1/topics", get(topics))
        .route("/v1/topics/{name}", get(topic))
        .route("/v1/metadata/events", get(events))
        .route("/v1/replicas", get(replicas))
        .route("/v1/groups", get(groups))
        .route("/v1/groups/{id}", get(group))
        .route("/v1/transactions", get(transactions))
        .route("/v1/transactions/{id}", get(transaction))
        .route("/metrics", get(metrics))
        .route("/healthz", get(api::healthz))
        .route("/readyz", get(readyz))
        .route(
            "/v1/admin/controlled-shutdown",
            axum::routing::post(controlled_shutdown),
        )
        .merge(crate::console::routes())
        .fallback(|| async {
            ApiError {
                status: StatusCode::NOT_FOUND,
                code: "not_found",
                message: "no such endpoint; see /v1/cluster, /v1/brokers, /v1/topics, /v1/replicas, /v1/groups, /v1/metadata/events, /metrics, /healthz, /readyz, /ui (the console)".into(),
            }
        })
        .with_state(broker)
}

/// Serves the HTTP API, over TLS when `tls` is given (`--http-tls`).
pub async fn serve(
    broker: Arc<Broker>,
    listener: TcpListener,
    tls: Option<Arc<crate::security::tls::TlsContext>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let app = router(broker);
    let stop = async move {
        let _ = shutdown.changed().await;
    };
    let result = match tls {
        None => {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<PeerAddr>(),
            )
            .with_graceful_shutdown(stop)
            .await
        }
        Some(tls) => {
            // New connections get the certificate of the moment (it is reloaded on change).
            let acceptor = Arc::new(move || tls.acceptor());
            match metadata_quorum::quorum::tls::TlsListener::new(listener, acceptor) {
                Ok(l) => {
                    axum::serve(l, app.into_make_service_with_connect_info::<PeerAddr>())
                        .with_graceful_shutdown(stop)
                        .await
                }
                Err(e) => Err(e),
            }
        }
    };
    if let Err(e) = result {
        warn!(error = %e, "http server failed");
    }
}

/// `POST /v1/admin/controlled-shutdown`: what a Kubernetes preStop hook calls before the
/// pod's SIGTERM. Hands every leadership over (as SIGTERM would) and answers once done, so
/// the kubelet sends SIGTERM to a broker that leads nothing. Only from this host: the
/// broker's own loopback, where the hook runs.
async fn controlled_shutdown(
    State(b): State<Arc<Broker>>,
    axum::extract::ConnectInfo(PeerAddr(peer)): axum::extract::ConnectInfo<PeerAddr>,
) -> Result<Json<Value>, ApiError> {
    if !peer.ip().is_loopback() {
        return Err(ApiError {
            status: StatusCode::FORBIDDEN,
            code: "forbidden",
            message: format!(
                "a controlled shutdown is triggered from the broker's own host only (this came from {peer})"
            ),
        });
    }
    tracing::info!(%peer, "controlled shutdown requested over HTTP (preStop)");
    let started = std::time::Instant::now();
    b.controlled_shutdown().await;
    let image = b.image();
    let leading = image
        .topics()
        .flat_map(|t| t.partitions.iter())
        .filter(|p| p.leader == b.node_id)
        .count();
    Ok(Json(json!({
        "node_id": b.node_id,
        "leading": leading,
        "elapsed_ms": started.elapsed().as_millis() as u64,
    })))
}

#[derive(Debug, serde::Deserialize)]
struct ReplicasQuery {
    /// Adds a CRC-32C over every stored batch that ends below this offset, so replicas'
    /// logs can be compared byte for byte.
    digest_below: Option<i64>,
}

/// This broker's replicas: role, offsets, epoch cache, and as leader its followers' progress.
async fn replicas(
    State(b): State<Arc<Broker>>,
    Query(q): Query<ReplicasQuery>,
) -> Result<Json<Value>, ApiError> {
    let image = b.image();
    let now = crate::log::now_ms();
    let mut out = Vec::new();
    let mut logs = b.logs.all();
    logs.sort_by_key(|l| l.topic_partition());
    for log in logs {
        let tp = log.topic_partition();
        let topic = image
            .topic_by_id(&tp.topic_id)
            .map_or_else(String::new, |t| t.name.clone());
        let state = log.state();
        let mut doc = json!({
            "topic": topic,
            "partition": tp.partition,
            "leader_epoch": log.leader_epoch(),
            "log_start_offset": state.log_start_offset,
            "log_end_offset": state.log_end_offset,
            "high_watermark": log.high_watermark(),
            "epochs": log.epoch_entries().iter().map(|e| json!([e.epoch, e.start_offset])).collect::<Vec<_>>(),
        });
        match log.role() {
            crate::log::Role::Leader(l) => {
                doc["role"] = json!("leader");
                doc["isr"] = json!(l.isr);
                doc["pending_isr"] = json!(l.pending_isr);
                doc["followers"] = l
                    .replicas
                    .iter()
                    .filter_map(|r| {
                        let f = l.follower(*r)?;
                        Some(json!({
                            "broker": r,
                            "log_end_offset": f.log_end_offset,
                            "caught_up_ms_ago": now - f.last_caught_up_ms,
                        }))
                    })
                    .collect();
            }
            crate::log::Role::Follower { leader, .. } => {
                doc["role"] = json!("follower");
                doc["leader"] = json!(leader);
            }
            crate::log::Role::None => doc["role"] = json!("none"),
        }
        if let Some(below) = q.digest_below {
            let digest = log.digest_below(below).map_err(|e| ApiError {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                code: "storage_error",
                message: e.to_string(),
            })?;
            doc["digest"] = json!(digest);
        }
        out.push(doc);
    }
    Ok(Json(Value::Array(out)))
}

async fn cluster(State(b): State<Arc<Broker>>) -> Json<Value> {
    let image = b.image();
    Json(json!({
        "cluster_id": image.cluster_id,
        "broker_id": b.node_id,
        "metadata_offset": image.offset,
        "quorum": b.controller.quorum_addrs(),
        "mode": if b.config.dev { "dev" } else { "cluster" },
        "brokers": image.brokers.len(),
        "topics": image.topics().count(),
    }))
}

async fn brokers(State(b): State<Arc<Broker>>) -> Json<Value> {
    Json(api::brokers_json(&b.image(), |_| None))
}

async fn topics(State(b): State<Arc<Broker>>) -> Json<Value> {
    Json(api::topics_json(&b.image()))
}

async fn topic(
    State(b): State<Arc<Broker>>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let image = b.image();
    let t = image.topic(&name).ok_or_else(|| ApiError {
        status: StatusCode::NOT_FOUND,
        code: "unknown_topic",
        message: format!("topic '{name}' does not exist"),
    })?;
    Ok(Json(api::topic_json(t, |partition| {
        // Offsets of the partitions this broker holds a log for.
        let log = b.logs.get(&TopicPartition::new(t.topic_id, partition))?;
        let state = log.state();
        Some(json!({
            "log_start_offset": state.log_start_offset,
            "log_end_offset": state.log_end_offset,
            "high_watermark": log.high_watermark(),
            "last_stable_offset": log.last_stable_offset(),
            "size_bytes": state.size_bytes,
        }))
    })))
}

fn transaction_json(id: &str, m: &crate::txn::TxnMetadata) -> Value {
    json!({
        "transactional_id": id,
        "producer_id": m.producer_id,
        "producer_epoch": m.producer_epoch,
        "state": m.state.name(),
        "timeout_ms": m.timeout_ms,
        "start_time_ms": m.start_ms,
        "last_update_ms": m.last_update_ms,
        "partitions": m.partitions.iter().map(|(t, p)| json!({"topic": t, "partition": p})).collect::<Vec<_>>(),
    })
}

/// The transactional ids this broker coordinates (ListTransactions asks every broker).
async fn transactions(State(b): State<Arc<Broker>>) -> Json<Value> {
    Json(json!(b
        .txns
        .all()
        .iter()
        .map(|(id, m)| transaction_json(id, m))
        .collect::<Vec<_>>()))
}

async fn transaction(
    State(b): State<Arc<Broker>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    b.txns
        .get(&id)
        .map(|m| Json(transaction_json(&id, &m)))
        .ok_or_else(|| ApiError {
            status: StatusCode::NOT_FOUND,
            code: "unknown_transactional_id",
            message: format!(
                "transactional id '{id}' is not known to this broker (ask its coordinator)"
            ),
        })
}

async fn groups(State(b): State<Arc<Broker>>) -> Json<Value> {
    Json(json!(b
        .groups
        .list()
        .into_iter()
        .map(|(id, state, protocol_type)| json!({"group_id": id, "state": state, "protocol_type": protocol_type}))
        .collect::<Vec<_>>()))
}

/// Decodes a "consumer" protocol assignment into (topic, partitions).
pub(crate) fn assigned(bytes: &bytes::Bytes) -> Vec<(String, Vec<i32>)> {
    crate::group::consumer_assignment(bytes)
        .map(|a| {
            a.assigned_partitions
                .into_iter()
                .map(|tp| (tp.topic.to_string(), tp.partitions))
                .collect()
        })
        .unwrap_or_default()
}

async fn group(
    State(b): State<Arc<Broker>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let description = b.groups.describe(&id);
    let committed = b.group_lag(&id);
    if description.is_none() && committed.is_empty() {
        return Err(ApiError {
            status: StatusCode::NOT_FOUND,
            code: "unknown_group",
            message: format!("group '{id}' is not known to this broker (ask its coordinator)"),
        });
    }
    let offsets: Vec<Value> = committed
        .into_iter()
        .map(|o| {
            json!({
                "topic": o.topic,
                "partition": o.partition,
                "committed_offset": o.committed.offset,
                "metadata": o.committed.metadata,
                "end_offset": o.end,
                "lag": o.lag,
            })
        })
        .collect();
    let (state, protocol, generation, members) = match description {
        Some(d) => (
            d.state,
            d.protocol,
            d.generation,
            d.members
                .into_iter()
                .map(|(member, instance, client, host, _, assignment)| {
                    json!({
                        "member_id": member,
                        "group_instance_id": instance,
                        "client_id": client,
                        "host": host,
                        "assignment": assigned(&assignment)
                            .into_iter()
                            .map(|(t, p)| json!({"topic": t, "partitions": p}))
                            .collect::<Vec<_>>(),
                    })
                })
                .collect::<Vec<_>>(),
        ),
        None => ("Empty", String::new(), 0, vec![]),
    };
    Ok(Json(json!({
        "group_id": id,
        "state": state,
        "protocol": protocol,
        "generation": generation,
        "members": members,
        "offsets": offsets,
    })))
}

async fn events(
    State(b): State<Arc<Broker>>,
    Query(q): Query<api::EventsQuery>,
) -> Json<api::EventsPage> {
    Json(api::EventsPage::new(
        q.from,
        b.controller.events(q.from, q.limit.min(10_000)),
    ))
}

/// Readiness: 200 when this broker is registered and unfenced, heartbeating, and caught up
/// with the metadata log (its Kafka listeners are bound before the HTTP server starts); 503
/// with the checks otherwise.
async fn readyz(State(b): State<Arc<Broker>>) -> Response {
    let h = b.controller.health();
    let heartbeating = h
        .millis_since_heartbeat
        .is_some_and(|ms| ms <= b.config.broker_session_timeout_ms);
    let replicas = b.replica_readiness();
    let ready = h.registered && !h.fenced && heartbeating && h.caught_up && replicas.caught_up;
    let mut checks = json!(h);
    checks["node_id"] = json!(b.node_id);
    checks["heartbeating"] = json!(heartbeating);
    checks["replicas"] = json!(replicas);
    api::readiness_response(ready, checks)
}

async fn metrics(State(b): State<Arc<Broker>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        crate::metrics::scrape(&b),
    )
}
