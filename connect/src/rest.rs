//! Kafka Connect's REST API: the same paths, status codes and JSON shapes, so `curl`
//! scripts, UIs and operators written for Kafka Connect work against a Strom worker.
//!
//! Reads are answered by any worker from what it has read of the config and status
//! topics. Writes are made by the group's leader: a follower forwards them (and answers
//! 409 while the group has no leader, as Kafka Connect does during a rebalance).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::Request;
use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value as Js};
use strom_client::admin::Admin;
use strom_client::TopicPartition;

use crate::herder::Herder;
use crate::plugin::{ConfigKey, ConfigType, ConnectorPlugin, ConnectorType};
use crate::props::Props;
use crate::store::{ConfigOp, ConnectorEntry, RestartRequest, StatusKey, TargetState};
use crate::worker::{sink_group, sink_topics, Worker};

#[derive(Clone)]
pub struct Api {
    pub herder: Arc<Herder>,
    pub worker: Arc<Worker>,
    /// Distributed mode: writes go through the leader.
    pub distributed: bool,
    /// This worker's REST URL.
    pub url: String,
    pub cluster_id: Option<String>,
    pub http: reqwest::Client,
}

/// An error as Kafka Connect shapes it: `{"error_code": 404, "message": "..."}`.
pub struct ApiError(StatusCode, String);

impl ApiError {
    fn not_found(name: &str) -> Self {
        ApiError(StatusCode::NOT_FOUND, format!("Connector {name} not found"))
    }
    fn bad(msg: impl Into<String>) -> Self {
        ApiError(StatusCode::BAD_REQUEST, msg.into())
    }
    fn internal(e: impl std::fmt::Display) -> Self {
        ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.0,
            Json(json!({"error_code": self.0.as_u16(), "message": self.1})),
        )
            .into_response()
    }
}

type ApiResult = Result<Response, ApiError>;

pub fn router(api: Api) -> Router {
    Router::new()
        .route("/", get(root))
        .route("/metrics", get(metrics))
        .route("/connectors", get(list).post(create))
        .route("/connectors/{name}", get(info).delete(delete))
        .route(
            "/connectors/{name}/config",
            get(config).put(put_config).patch(patch_config),
        )
        .route("/connectors/{name}/status", get(status))
        .route("/connectors/{name}/tasks", get(tasks))
        .route("/connectors/{name}/tasks/{task}/status", get(task_status))
        .route(
            "/connectors/{name}/tasks/{task}/restart",
            axum::routing::post(restart_task),
        )
        .route("/connectors/{name}/restart", axum::routing::post(restart))
        .route("/connectors/{name}/pause", put(pause))
        .route("/connectors/{name}/resume", put(resume))
        .route("/connectors/{name}/stop", put(stop))
        .route("/connectors/{name}/topics", get(topics))
        .route("/connectors/{name}/topics/reset", put(reset_topics))
        .route(
            "/connectors/{name}/offsets",
            get(offsets).patch(alter_offsets).delete(reset_offsets),
        )
        .route("/connector-plugins", get(plugins))
        .route(
            "/connector-plugins/{plugin}/config/validate",
            put(validate_route),
        )
        .fallback(|| async { ApiError(StatusCode::NOT_FOUND, "HTTP 404 Not Found".into()) })
        .layer(axum::middleware::from_fn_with_state(
            api.clone(),
            forward_writes,
        ))
        .with_state(api)
}

impl Api {
    fn entry(&self, name: &str) -> Result<ConnectorEntry, ApiError> {
        self.worker
            .configs
            .watch()
            .borrow()
            .connectors
            .get(name)
            .cloned()
            .ok_or_else(|| ApiError::not_found(name))
    }

    async fn write(&self, op: ConfigOp) -> Result<(), ApiError> {
        self.worker
            .configs
            .write(op)
            .await
            .map_err(ApiError::internal)
    }

    fn connector_info(&self, name: &str, e: &ConnectorEntry) -> Js {
        json!({
            "name": name,
            "config": e.config,
            "tasks": self.task_ids(name, e),
            "type": self.kind_of(&e.config),
        })
    }

    fn task_ids(&self, name: &str, e: &ConnectorEntry) -> Vec<Js> {
        if e.target == TargetState::Stopped {
            return Vec::new();
        }
        let n = e.current_tasks().map_or(0, <[Props]>::len);
        (0..n)
            .map(|i| json!({"connector": name, "task": i}))
            .collect()
    }

    fn kind_of(&self, config: &Props) -> &'static str {
        config
            .get("connector.class")
            .and_then(|c| self.worker.plugins.find(c))
            .map_or("unknown", |p| p.kind().name())
    }

    fn status_json(&self, name: &str, e: &ConnectorEntry) -> Js {
        let all = self.worker.statuses.all();
        let m = self.herder.membership.borrow().clone();
        let connector = match all.get(&StatusKey::Connector(name.into())) {
            Some(s) => status_obj(&s.state, &s.worker_id, s.trace.as_deref()),
            None => status_obj("UNASSIGNED", m.connector_owner(name).unwrap_or(""), None),
        };
        let n = if e.target == TargetState::Stopped {
            0
        } else {
            e.current_tasks().map_or(0, <[Props]>::len)
        };
        let tasks: Vec<Js> = (0..n)
            .map(|i| {
                let mut t = match all.get(&StatusKey::Task(name.into(), i)) {
                    Some(s) => status_obj(&s.state, &s.worker_id, s.trace.as_deref()),
                    None => status_obj("UNASSIGNED", m.task_owner(name, i).unwrap_or(""), None),
                };
                t["id"] = json!(i);
                t
            })
            .collect();
        json!({"name": name, "connector": connector, "tasks": tasks, "type": self.kind_of(&e.config)})
    }
}

/// In distributed mode, a follower sends every write (POST, PUT, PATCH, DELETE) to the
/// group's leader and relays its answer, so configs are checked and written in one place;
/// with no leader (a rebalance under way) it answers 409, as Kafka Connect does.
async fn forward_writes(State(api): State<Api>, req: Request, next: Next) -> Response {
    let write = matches!(
        *req.method(),
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    ) && req.uri().path().starts_with("/connectors");
    if !api.distributed || !write || req.headers().contains_key("x-strom-forwarded") {
        return next.run(req).await;
    }
    let leader = api.herder.membership.borrow().leader_url.clone();
    let Some(leader) = leader else {
        return ApiError(
            StatusCode::CONFLICT,
            "Cannot complete request momentarily due to no known leader URL, likely because a rebalance was underway.".into(),
        )
        .into_response();
    };
    if leader.trim_end_matches('/') == api.url.trim_end_matches('/') {
        return next.run(req).await;
    }
    let target = format!(
        "{}{}",
        leader.trim_end_matches('/'),
        req.uri().path_and_query().map_or("/", |p| p.as_str())
    );
    tracing::info!(%target, "forwarding a write to the leader");
    let method = reqwest::Method::from_bytes(req.method().as_str().as_bytes())
        .unwrap_or(reqwest::Method::POST);
    let body = match axum::body::to_bytes(req.into_body(), 16 << 20).await {
        Ok(b) => b,
        Err(e) => {
            return ApiError::bad(format!("cannot read the request body: {e}")).into_response()
        }
    };
    let sent = api
        .http
        .request(method, &target)
        .header("x-strom-forwarded", "1")
        .header("content-type", "application/json")
        .body(body.to_vec())
        .send()
        .await;
    match sent {
        Ok(r) => {
            let code = StatusCode::from_u16(r.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            let bytes = r.bytes().await.unwrap_or_default();
            (code, [("content-type", "application/json")], bytes.to_vec()).into_response()
        }
        Err(e) => ApiError(
            StatusCode::CONFLICT,
            format!("Cannot forward the request to the leader {leader}: {e}"),
        )
        .into_response(),
    }
}

fn status_obj(state: &str, worker: &str, trace: Option<&str>) -> Js {
    let mut o = json!({"state": state, "worker_id": worker});
    if let Some(t) = trace {
        o["trace"] = json!(t);
    }
    o
}

async fn root(State(api): State<Api>) -> Json<Js> {
    Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "commit": option_env!("STROM_GIT_COMMIT").unwrap_or("unknown"),
        "kafka_cluster_id": api.cluster_id,
    }))
}

async fn metrics(State(api): State<Api>) -> impl IntoResponse {
    (
        [(
            "content-type",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        api.worker.metrics.render(&api.herder.running()),
    )
}

async fn list(State(api): State<Api>, Query(q): Query<Vec<(String, String)>>) -> Json<Js> {
    let expand: Vec<String> = q
        .iter()
        .filter(|(k, _)| k == "expand")
        .map(|(_, v)| v.clone())
        .collect();
    let cfg = api.worker.configs.watch().borrow().clone();
    if expand.is_empty() {
        return Json(json!(cfg.connectors.keys().collect::<Vec<_>>()));
    }
    let mut out = serde_json::Map::new();
    for (name, e) in &cfg.connectors {
        let mut o = serde_json::Map::new();
        if expand.iter().any(|x| x == "status") {
            o.insert("status".into(), api.status_json(name, e));
        }
        if expand.iter().any(|x| x == "info") {
            o.insert("info".into(), api.connector_info(name, e));
        }
        out.insert(name.clone(), Js::Object(o));
    }
    Json(Js::Object(out))
}

/// A JSON object of strings as a config (numbers and booleans as their text).
fn props_of(v: &Js) -> Result<Props, ApiError> {
    let o = v
        .as_object()
        .ok_or_else(|| ApiError::bad("the connector config must be a JSON object"))?;
    Ok(o.iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string()),
            )
        })
        .collect())
}

fn check_name(name: &str) -> Result<(), ApiError> {
    if name.trim().is_empty() {
        return Err(ApiError::bad("Connector name is empty or only whitespace"));
    }
    if name.chars().any(char::is_control) {
        return Err(ApiError::bad(format!(
            "Connector name {name:?} contains control characters"
        )));
    }
    Ok(())
}

/// Validates a config; Err with Kafka Connect's message when it has errors.
fn validate_or_reject(api: &Api, config: &Props) -> Result<(), ApiError> {
    let class = config.get("connector.class").ok_or_else(|| {
        ApiError::bad(format!(
            "Connector config {config:?} contains no connector type"
        ))
    })?;
    let plugin = api.worker.plugins.find(class).ok_or_else(|| {
        ApiError::bad(format!(
            "Failed to find any class that implements Connector and which name matches {class}"
        ))
    })?;
    let (errors, _) = validate(&*plugin, config);
    if errors.is_empty() {
        return Ok(());
    }
    let mut msg = format!(
        "Connector configuration is invalid and contains the following {} error(s):\n",
        errors.len()
    );
    for (_, e) in &errors {
        msg.push_str(e);
        msg.push('\n');
    }
    msg.push_str("You can also find the above list of errors at the endpoint `/connector-plugins/{connectorType}/config/validate`");
    Err(ApiError::bad(msg))
}

/// The keys every connector has, as Kafka's `ConnectorConfig` (and `SinkConnectorConfig`) define them.
fn common_keys(kind: ConnectorType) -> Vec<ConfigKey> {
    let mut keys = vec![
        ConfigKey::new("name", ConfigType::String, "Globally unique name to use for this connector.").required().group("Common"),
        ConfigKey::new("connector.class", ConfigType::String, "Name or alias of the class for this connector.").required().group("Common"),
        ConfigKey::new("tasks.max", ConfigType::Int, "Maximum number of tasks to use for this connector.").default("1").at_least(1).group("Common"),
        ConfigKey::new("key.converter", ConfigType::Class, "Converter class used to convert between Kafka Connect format and the serialized form that is written to Kafka.").group("Common"),
        ConfigKey::new("value.converter", ConfigType::Class, "Converter class used to convert between Kafka Connect format and the serialized form that is written to Kafka.").group("Common"),
        ConfigKey::new("transforms", ConfigType::List, "Aliases for the transformations to be applied to records.").default("").group("Transforms"),
        ConfigKey::new("predicates", ConfigType::List, "Aliases for the predicates used by transformations.").default("").group("Predicates"),
        ConfigKey::new("errors.retry.timeout", ConfigType::Long, "The maximum duration in milliseconds that a failed operation will be reattempted.").default("0").group("Error Handling"),
        ConfigKey::new("errors.retry.delay.max.ms", ConfigType::Long, "The maximum duration in milliseconds between consecutive retry attempts.").default("60000").group("Error Handling"),
        ConfigKey::new("errors.tolerance", ConfigType::String, "Behavior for tolerating errors during connector operation.").default("none").one_of(&["none", "all"]).group("Error Handling"),
        ConfigKey::new("errors.log.enable", ConfigType::Boolean, "If true, write each error and the details of the failed operation and problematic record to the Connect application log.").default("false").group("Error Handling"),
        ConfigKey::new("errors.log.include.messages", ConfigType::Boolean, "Whether to include in the log the Connect record that resulted in a failure.").default("false").group("Error Handling"),
    ];
    if kind == ConnectorType::Sink {
        keys.extend([
            ConfigKey::new("topics", ConfigType::List, "List of topics to consume, separated by commas").default("").group("Common"),
            ConfigKey::new("errors.deadletterqueue.topic.name", ConfigType::String, "The name of the topic to be used as the dead letter queue (DLQ) for messages that result in an error when processed by this sink connector.").default("").group("Error Handling"),
            ConfigKey::new("errors.deadletterqueue.topic.replication.factor", ConfigType::Int, "Replication factor used to create the dead letter queue topic when it doesn't already exist.").default("-1").group("Error Handling"),
            ConfigKey::new("errors.deadletterqueue.context.headers.enable", ConfigType::Boolean, "If true, add headers containing error context to the messages written to the dead letter queue.").default("false").group("Error Handling"),
        ]);
    }
    keys
}

/// Per-key errors of a config, and Kafka Connect's validation answer.
fn validate(plugin: &dyn ConnectorPlugin, config: &Props) -> (Vec<(String, String)>, Js) {
    let mut keys = common_keys(plugin.kind());
    keys.extend(plugin.config_def());
    let mut per_key: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for k in &keys {
        let errs = k.errors(config.get(k.name).map(String::as_str));
        if !errs.is_empty() {
            per_key.entry(k.name.to_string()).or_default().extend(errs);
        }
    }
    for which in ["key.converter", "value.converter"] {
        if config.contains_key(which) {
            if let Err(e) = crate::converter::from_config(config, which) {
                per_key.entry(which.into()).or_default().push(e);
            }
        }
    }
    if let Err((k, e)) = crate::transforms::Chain::from_config(config) {
        per_key.entry(k).or_default().push(e);
    }
    if plugin.kind() == ConnectorType::Sink {
        if config.contains_key("topics.regex") {
            per_key.entry("topics.regex".into()).or_default().push(
                "topics.regex is not supported by this worker; list the topics in 'topics'".into(),
            );
        } else if sink_topics(config).is_empty() {
            per_key
                .entry("topics".into())
                .or_default()
                .push("Must configure one of topics or topics.regex".into());
        }
        if let (Some(dlq), Some(t)) = (
            config.get("errors.deadletterqueue.topic.name"),
            config.get("topics"),
        ) {
            if !dlq.is_empty() && t.split(',').any(|x| x.trim() == dlq) {
                per_key.entry("errors.deadletterqueue.topic.name".into()).or_default().push(format!("The DLQ topic '{dlq}' may not be included in the list of topics ('topics=...') consumed by the connector"));
            }
        }
    }
    for (k, e) in plugin.validate(config) {
        per_key.entry(k).or_default().push(e);
    }
    let mut configs: Vec<Js> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            json!({
                "definition": k.definition_json(i),
                "value": {
                    "name": k.name,
                    "value": config.get(k.name).cloned().or(k.default.map(str::to_string)),
                    "recommended_values": k.one_of,
                    "errors": per_key.get(k.name).cloned().unwrap_or_default(),
                    "visible": true,
                }
            })
        })
        .collect();
    // Errors on keys outside the definitions (transforms.x.type, ...).
    for (k, errs) in &per_key {
        if !keys.iter().any(|d| d.name == k) {
            configs.push(json!({"value": {"name": k, "value": config.get(k), "recommended_values": [], "errors": errs, "visible": true}}));
        }
    }
    let errors: Vec<(String, String)> = per_key
        .into_iter()
        .flat_map(|(k, es)| es.into_iter().map(move |e| (k.clone(), e)))
        .collect();
    let mut groups: Vec<&str> = keys.iter().filter_map(|k| k.group).collect();
    groups.dedup();
    let answer = json!({
        "name": plugin.class(),
        "error_count": errors.len(),
        "groups": groups,
        "configs": configs,
    });
    (errors, answer)
}

async fn create(State(api): State<Api>, body: Bytes) -> ApiResult {
    let req: Js =
        serde_json::from_slice(&body).map_err(|e| ApiError::bad(format!("Invalid JSON: {e}")))?;
    let name = req["name"]
        .as_str()
        .map(str::to_string)
        .or_else(|| req["config"]["name"].as_str().map(str::to_string));
    let name = name.ok_or_else(|| ApiError::bad("Connector name must be specified"))?;
    check_name(&name)?;
    let mut config = props_of(req.get("config").unwrap_or(&Js::Null))?;
    config.insert("name".into(), name.clone());
    let initial = match req.get("initial_state").and_then(Js::as_str) {
        None | Some("RUNNING") => TargetState::Started,
        Some("PAUSED") => TargetState::Paused,
        Some("STOPPED") => TargetState::Stopped,
        Some(other) => {
            return Err(ApiError::bad(format!(
                "Invalid initial state {other}: must be RUNNING, PAUSED or STOPPED"
            )))
        }
    };
    if api.entry(&name).is_ok() {
        return Err(ApiError(
            StatusCode::CONFLICT,
            format!("Connector {name} already exists"),
        ));
    }
    validate_or_reject(&api, &config)?;
    api.write(ConfigOp::PutConnector(name.clone(), config))
        .await?;
    if initial != TargetState::Started {
        api.write(ConfigOp::Target(name.clone(), initial)).await?;
    }
    let e = api.entry(&name)?;
    Ok((StatusCode::CREATED, Json(api.connector_info(&name, &e))).into_response())
}

async fn info(State(api): State<Api>, Path(name): Path<String>) -> ApiResult {
    let e = api.entry(&name)?;
    Ok(Json(api.connector_info(&name, &e)).into_response())
}

async fn delete(State(api): State<Api>, Path(name): Path<String>) -> ApiResult {
    let e = api.entry(&name)?;
    api.write(ConfigOp::DeleteConnector(name.clone())).await?;
    api.worker
        .statuses
        .put(StatusKey::Connector(name.clone()), None)
        .await;
    for i in 0..e.tasks.len() {
        api.worker
            .statuses
            .put(StatusKey::Task(name.clone(), i), None)
            .await;
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn config(State(api): State<Api>, Path(name): Path<String>) -> ApiResult {
    Ok(Json(json!(api.entry(&name)?.config)).into_response())
}

async fn put_config(State(api): State<Api>, Path(name): Path<String>, body: Bytes) -> ApiResult {
    check_name(&name)?;
    let req: Js =
        serde_json::from_slice(&body).map_err(|e| ApiError::bad(format!("Invalid JSON: {e}")))?;
    let mut config = props_of(&req)?;
    if let Some(n) = config.get("name") {
        if *n != name {
            return Err(ApiError::bad(format!("Connector name configuration ({n}) doesn't match connector name in the URL ({name})")));
        }
    }
    config.insert("name".into(), name.clone());
    let existed = api.entry(&name).is_ok();
    validate_or_reject(&api, &config)?;
    api.write(ConfigOp::PutConnector(name.clone(), config))
        .await?;
    let e = api.entry(&name)?;
    let code = if existed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((code, Json(api.connector_info(&name, &e))).into_response())
}

async fn patch_config(State(api): State<Api>, Path(name): Path<String>, body: Bytes) -> ApiResult {
    let req: Js =
        serde_json::from_slice(&body).map_err(|e| ApiError::bad(format!("Invalid JSON: {e}")))?;
    let patch = req
        .as_object()
        .ok_or_else(|| ApiError::bad("the patch must be a JSON object"))?;
    let mut config = api.entry(&name)?.config;
    if let Some(n) = patch.get("name").and_then(Js::as_str) {
        if n != name {
            return Err(ApiError::bad(format!("Connector name configuration ({n}) doesn't match connector name in the URL ({name})")));
        }
    }
    for (k, v) in patch {
        match v {
            Js::Null => {
                config.shift_remove(k);
            }
            v => {
                config.insert(
                    k.clone(),
                    v.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string()),
                );
            }
        }
    }
    validate_or_reject(&api, &config)?;
    api.write(ConfigOp::PutConnector(name.clone(), config))
        .await?;
    let e = api.entry(&name)?;
    Ok(Json(api.connector_info(&name, &e)).into_response())
}

async fn status(State(api): State<Api>, Path(name): Path<String>) -> ApiResult {
    let e = api.entry(&name)?;
    Ok(Json(api.status_json(&name, &e)).into_response())
}

async fn tasks(State(api): State<Api>, Path(name): Path<String>) -> ApiResult {
    let e = api.entry(&name)?;
    let tasks: Vec<Js> = if e.target == TargetState::Stopped {
        Vec::new()
    } else {
        e.current_tasks()
            .unwrap_or(&[])
            .iter()
            .enumerate()
            .map(|(i, t)| json!({"id": {"connector": name, "task": i}, "config": t}))
            .collect()
    };
    Ok(Json(json!(tasks)).into_response())
}

fn task_index(api: &Api, name: &str, task: &str) -> Result<(ConnectorEntry, usize), ApiError> {
    let e = api.entry(name)?;
    let n = if e.target == TargetState::Stopped {
        0
    } else {
        e.current_tasks().map_or(0, <[Props]>::len)
    };
    match task.parse::<usize>() {
        Ok(i) if i < n => Ok((e, i)),
        _ => Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("Task {name}-{task} not found"),
        )),
    }
}

async fn task_status(
    State(api): State<Api>,
    Path((name, task)): Path<(String, String)>,
) -> ApiResult {
    let (e, i) = task_index(&api, &name, &task)?;
    let status = api.status_json(&name, &e);
    Ok(Json(status["tasks"][i].clone()).into_response())
}

async fn restart_task(
    State(api): State<Api>,
    Path((name, task)): Path<(String, String)>,
) -> ApiResult {
    let (_, i) = task_index(&api, &name, &task)?;
    let r = RestartRequest {
        id: uuid::Uuid::new_v4().to_string(),
        include_tasks: true,
        only_failed: false,
        task: Some(i),
    };
    api.write(ConfigOp::Restart(name, r)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
struct RestartQuery {
    #[serde(rename = "includeTasks", default)]
    include_tasks: bool,
    #[serde(rename = "onlyFailed", default)]
    only_failed: bool,
}

async fn restart(
    State(api): State<Api>,
    Path(name): Path<String>,
    Query(q): Query<RestartQuery>,
) -> ApiResult {
    let e = api.entry(&name)?;
    let r = RestartRequest {
        id: uuid::Uuid::new_v4().to_string(),
        include_tasks: q.include_tasks,
        only_failed: q.only_failed,
        task: None,
    };
    api.write(ConfigOp::Restart(name.clone(), r)).await?;
    if !q.include_tasks && !q.only_failed {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    Ok((StatusCode::ACCEPTED, Json(api.status_json(&name, &e))).into_response())
}

async fn set_target(api: Api, name: String, target: TargetState) -> ApiResult {
    api.entry(&name)?;
    api.write(ConfigOp::Target(name, target)).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

async fn pause(State(api): State<Api>, Path(name): Path<String>) -> ApiResult {
    set_target(api, name, TargetState::Paused).await
}

async fn resume(State(api): State<Api>, Path(name): Path<String>) -> ApiResult {
    set_target(api, name, TargetState::Started).await
}

async fn stop(State(api): State<Api>, Path(name): Path<String>) -> ApiResult {
    set_target(api, name, TargetState::Stopped).await
}

async fn topics(State(api): State<Api>, Path(name): Path<String>) -> ApiResult {
    let e = api.entry(&name)?;
    let mut topics: Vec<String> = api
        .worker
        .statuses
        .all()
        .into_keys()
        .filter_map(|k| match k {
            StatusKey::Topic(n, t) if n == name => Some(t),
            _ => None,
        })
        .collect();
    if api.kind_of(&e.config) == "sink" && topics.is_empty() {
        topics = sink_topics(&e.config);
    }
    topics.sort();
    topics.dedup();
    Ok(Json(json!({ name: {"topics": topics} })).into_response())
}

async fn reset_topics(State(api): State<Api>, Path(name): Path<String>) -> ApiResult {
    api.entry(&name)?;
    for k in api.worker.statuses.all().into_keys() {
        if matches!(&k, StatusKey::Topic(n, _) if *n == name) {
            api.worker.statuses.put(k, None).await;
        }
    }
    Ok(StatusCode::OK.into_response())
}

async fn offsets(State(api): State<Api>, Path(name): Path<String>) -> ApiResult {
    let e = api.entry(&name)?;
    let list: Vec<Js> = if api.kind_of(&e.config) == "sink" {
        let mut admin = Admin::new(&api.worker.bootstrap);
        let committed = admin
            .list_group_offsets(&sink_group(&name))
            .await
            .map_err(ApiError::internal)?;
        committed
            .into_iter()
            .map(|(tp, o)| json!({"partition": {"kafka_topic": tp.topic, "kafka_partition": tp.partition}, "offset": {"kafka_offset": o.offset}}))
            .collect()
    } else {
        api.worker
            .offsets
            .all(&name)
            .await
            .map_err(ApiError::internal)?
            .into_iter()
            .map(|(p, o)| json!({"partition": p, "offset": o}))
            .collect()
    };
    Ok(Json(json!({ "offsets": list })).into_response())
}

fn require_stopped(api: &Api, name: &str) -> Result<ConnectorEntry, ApiError> {
    let e = api.entry(name)?;
    if e.target != TargetState::Stopped {
        return Err(ApiError::bad(format!(
            "Connectors must be in the STOPPED state before their offsets can be modified. This can be done for the specified connector by issuing a 'PUT' request to the '/connectors/{name}/stop' endpoint"
        )));
    }
    Ok(e)
}

async fn alter_offsets(State(api): State<Api>, Path(name): Path<String>, body: Bytes) -> ApiResult {
    let e = require_stopped(&api, &name)?;
    let req: Js =
        serde_json::from_slice(&body).map_err(|e| ApiError::bad(format!("Invalid JSON: {e}")))?;
    let list = req["offsets"]
        .as_array()
        .ok_or_else(|| ApiError::bad("The request body must contain an 'offsets' array"))?
        .clone();
    if api.kind_of(&e.config) == "sink" {
        let mut map = BTreeMap::new();
        for o in &list {
            let topic = o["partition"]["kafka_topic"].as_str().ok_or_else(|| {
                ApiError::bad("Kafka topic must be specified in the partition as 'kafka_topic'")
            })?;
            let p = o["partition"]["kafka_partition"].as_i64().ok_or_else(|| {
                ApiError::bad(
                    "Kafka partition must be specified in the partition as 'kafka_partition'",
                )
            })?;
            let off = o["offset"]["kafka_offset"].as_i64().ok_or_else(|| {
                ApiError::bad("Kafka offset must be specified in the offset as 'kafka_offset'")
            })?;
            map.insert(TopicPartition::new(topic, p as i32), off);
        }
        Admin::new(&api.worker.bootstrap)
            .alter_group_offsets(&sink_group(&name), &map)
            .await
            .map_err(ApiError::internal)?;
    } else {
        let batch = list
            .iter()
            .map(|o| {
                (
                    o["partition"].clone(),
                    (!o["offset"].is_null()).then(|| o["offset"].clone()),
                )
            })
            .collect();
        api.worker
            .offsets
            .put(&name, batch)
            .await
            .map_err(ApiError::internal)?;
    }
    Ok(
        Json(json!({"message": "The offsets for this connector have been altered successfully"}))
            .into_response(),
    )
}

async fn reset_offsets(State(api): State<Api>, Path(name): Path<String>) -> ApiResult {
    let e = require_stopped(&api, &name)?;
    if api.kind_of(&e.config) == "sink" {
        match Admin::new(&api.worker.bootstrap)
            .delete_group(&sink_group(&name))
            .await
        {
            Ok(()) => {}
            Err(err) if err.code() == Some(69) => {} // GROUP_ID_NOT_FOUND: nothing to reset
            Err(err) => return Err(ApiError::internal(err)),
        }
    } else {
        let all = api
            .worker
            .offsets
            .all(&name)
            .await
            .map_err(ApiError::internal)?;
        api.worker
            .offsets
            .put(&name, all.into_iter().map(|(p, _)| (p, None)).collect())
            .await
            .map_err(ApiError::internal)?;
    }
    Ok(
        Json(json!({"message": "The offsets for this connector have been reset successfully"}))
            .into_response(),
    )
}

async fn plugins(State(api): State<Api>, Query(q): Query<BTreeMap<String, String>>) -> Json<Js> {
    let mut out: Vec<Js> = api
        .worker
        .plugins
        .all()
        .iter()
        .map(|p| json!({"class": p.class(), "type": p.kind().name(), "version": p.version()}))
        .collect();
    if q.get("connectorsOnly").is_some_and(|v| v == "false") {
        let v = env!("CARGO_PKG_VERSION");
        for t in crate::transforms::TRANSFORMS {
            out.push(json!({"class": format!("org.apache.kafka.connect.transforms.{t}"), "type": "transformation", "version": v}));
        }
        for p in ["TopicNameMatches", "HasHeaderKey", "RecordIsTombstone"] {
            out.push(json!({"class": format!("org.apache.kafka.connect.transforms.predicates.{p}"), "type": "predicate", "version": v}));
        }
        for c in [
            "org.apache.kafka.connect.json.JsonConverter",
            "org.apache.kafka.connect.storage.StringConverter",
            "org.apache.kafka.connect.converters.ByteArrayConverter",
        ] {
            out.push(json!({"class": c, "type": "converter", "version": v}));
        }
    }
    Json(json!(out))
}

async fn validate_route(
    State(api): State<Api>,
    Path(plugin): Path<String>,
    body: Bytes,
) -> ApiResult {
    let req: Js =
        serde_json::from_slice(&body).map_err(|e| ApiError::bad(format!("Invalid JSON: {e}")))?;
    let config = props_of(&req)?;
    let found = api.worker.plugins.find(&plugin).ok_or_else(|| {
        ApiError::bad(format!(
            "Failed to find any class that implements Connector and which name matches {plugin}"
        ))
    })?;
    if let Some(c) = config.get("connector.class") {
        if api.worker.plugins.find(c).map(|p| p.class()) != Some(found.class()) {
            return Err(ApiError::bad(format!(
                "Included class name {c} does not match given plugin type {plugin}"
            )));
        }
    }
    let (_, answer) = validate(&*found, &config);
    Ok(Json(answer).into_response())
}
