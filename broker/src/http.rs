//! The HTTP/JSON API: cluster, brokers, topics with per-partition offsets, the metadata event
//! history, and Prometheus metrics. Errors are JSON: `{"error": {"code", "message"}}`.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
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
        .route("/metrics", get(metrics))
        .fallback(|| async {
            ApiError {
                status: StatusCode::NOT_FOUND,
                code: "not_found",
                message: "no such endpoint; see /v1/cluster, /v1/brokers, /v1/topics, /v1/metadata/events, /metrics".into(),
            }
        })
        .with_state(broker)
}

pub async fn serve(
    broker: Arc<Broker>,
    listener: TcpListener,
    mut shutdown: watch::Receiver<bool>,
) {
    let app = router(broker);
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = shutdown.changed().await;
        })
        .await;
    if let Err(e) = result {
        warn!(error = %e, "http server failed");
    }
}

async fn cluster(State(b): State<Arc<Broker>>) -> Json<Value> {
    let image = b.image();
    Json(json!({
        "cluster_id": image.cluster_id,
        "controller_id": b.node_id,
        "metadata_offset": image.offset,
        "quorum": {
            "kind": "local",
            "voters": [{"id": b.node_id, "state": "leader"}],
        },
        "brokers": image.brokers.len(),
        "topics": image.topics().count(),
    }))
}

async fn brokers(State(b): State<Arc<Broker>>) -> Json<Value> {
    let image = b.image();
    Json(json!(image
        .brokers
        .values()
        .map(|br| json!({
            "id": br.broker_id,
            "state": if br.fenced { "fenced" } else { "alive" },
            "incarnation": br.incarnation,
            "endpoints": br.endpoints,
            "rack": br.rack,
        }))
        .collect::<Vec<_>>()))
}

async fn topics(State(b): State<Arc<Broker>>) -> Json<Value> {
    let image = b.image();
    Json(json!(image
        .topics()
        .map(|t| json!({
            "name": t.name,
            "topic_id": t.topic_id,
            "partitions": t.partitions.len(),
            "replication_factor": t.partitions.first().map_or(0, |p| p.replicas.len()),
            "internal": t.is_internal(),
        }))
        .collect::<Vec<_>>()))
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
    let partitions: Vec<Value> = t
        .partitions
        .iter()
        .map(|p| {
            let log = b.logs.get(&TopicPartition::new(t.topic_id, p.partition));
            let state = log.as_ref().map(|l| l.state());
            json!({
                "partition": p.partition,
                "leader": p.leader,
                "replicas": p.replicas,
                "isr": p.isr,
                "leader_epoch": p.leader_epoch,
                "partition_epoch": p.partition_epoch,
                "log_start_offset": state.map(|s| s.log_start_offset),
                "log_end_offset": state.map(|s| s.log_end_offset),
                "high_watermark": log.as_ref().map(|l| l.high_watermark()),
                "size_bytes": state.map(|s| s.size_bytes),
            })
        })
        .collect();
    Ok(Json(json!({
        "name": t.name,
        "topic_id": t.topic_id,
        "internal": t.is_internal(),
        "configs": t.configs,
        "partitions": partitions,
    })))
}

#[derive(Debug, Deserialize)]
struct EventsQuery {
    #[serde(default)]
    from: u64,
    #[serde(default = "default_limit")]
    limit: usize,
}

fn default_limit() -> usize {
    1000
}

#[derive(Serialize)]
struct EventsPage {
    next: u64,
    events: Vec<metadata_quorum::LoggedRecord>,
}

async fn events(
    State(b): State<Arc<Broker>>,
    Query(q): Query<EventsQuery>,
) -> Result<Json<EventsPage>, ApiError> {
    let events = b
        .controller
        .events(q.from, q.limit.min(10_000))
        .map_err(|e| ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: e.code(),
            message: e.to_string(),
        })?;
    let next = events.last().map_or(q.from, |e| e.offset + 1);
    Ok(Json(EventsPage { next, events }))
}

async fn metrics(State(b): State<Arc<Broker>>) -> impl IntoResponse {
    let image = b.image();
    let partitions: usize = image.topics().map(|t| t.partitions.len()).sum();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        b.metrics.render(partitions, image.topics().count()),
    )
}
