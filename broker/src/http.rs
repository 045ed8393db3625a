//! The HTTP/JSON API: cluster, brokers, topics with per-partition offsets, the metadata event
//! history, and Prometheus metrics. Errors are JSON: `{"error": {"code", "message"}}`.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use metadata_quorum::quorum::api;
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
            "size_bytes": state.size_bytes,
        }))
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

async fn metrics(State(b): State<Arc<Broker>>) -> impl IntoResponse {
    let image = b.image();
    let partitions: usize = image.topics().map(|t| t.partitions.len()).sum();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        b.metrics.render(partitions, image.topics().count()),
    )
}
