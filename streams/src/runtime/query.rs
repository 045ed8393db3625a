//! Interactive queries: reading a running application's state stores.
//!
//! A key lives in one task (the partition its serialized key hashes to, as the default
//! partitioner places it), and that task is active on one instance. [`Queries::get`] answers
//! for keys whose task is active here and otherwise says which `application.server` hosts
//! it ([`StreamsError::NotLocal`]); [`Queries::range`] scans the local tasks.
//! [`Queries::router`] serves both over HTTP (axum), redirecting to the right instance:
//!
//! ```text
//! GET /stores/{store}/keys/{key}     {"key": .., "value": ..}, or 307 to the host, or 404
//! GET /stores/{store}/all            [{"key": .., "value": ..}, ...] (this instance's share)
//! GET /stores/{store}/range?from=&to=  the same, for keys in [from, to)
//! GET /metadata                      {"hosts": {"host:port": ["0_1", ...]}}
//! ```

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use bytes::Bytes;
use strom_client::partitioner::partition_for_key;

use super::Shared;
use crate::dsl::Data;
use crate::error::StreamsError;
use crate::record::{cast, Dyn};
use crate::task::TaskId;

/// A handle on an instance's stores (cheap to clone).
#[derive(Clone)]
pub struct Queries {
    pub(crate) shared: Arc<Shared>,
}

impl Queries {
    fn store_index(&self, store: &str) -> Result<usize, StreamsError> {
        self.shared
            .topo
            .stores
            .iter()
            .position(|s| s.name == store)
            .ok_or_else(|| StreamsError::Store {
                store: store.to_string(),
                reason: "no such store".into(),
            })
    }

    /// The task holding `key` in `store`.
    fn task_for<K: Data>(&self, store: usize, key: &K) -> Result<(TaskId, Bytes), StreamsError> {
        let def = &self.shared.topo.stores[store];
        let kb = def
            .key
            .serialize(&(Arc::new(key.clone()) as Dyn))
            .map_err(StreamsError::Serde)?
            .ok_or_else(|| StreamsError::Serde("a store key cannot be null".into()))?;
        let app = &self.shared.config.application_id;
        let partitions = self
            .shared
            .topo
            .subtopologies
            .get(def.subtopology)
            .and_then(|s| {
                s.sources
                    .iter()
                    .filter_map(|t| self.shared.partition_counts.get(&t.resolve(app)))
                    .max()
                    .copied()
            })
            .unwrap_or(1);
        Ok((
            TaskId {
                subtopology: def.subtopology,
                partition: partition_for_key(&kb, partitions),
            },
            kb,
        ))
    }

    /// The `application.server` whose instance has `key`'s task active, per the last
    /// rebalance.
    pub fn host_for_key<K: Data>(
        &self,
        store: &str,
        key: &K,
    ) -> Result<Option<String>, StreamsError> {
        let idx = self.store_index(store)?;
        let (task, _) = self.task_for(idx, key)?;
        Ok(self
            .hosts()
            .into_iter()
            .find_map(|(h, tasks)| tasks.contains(&task).then_some(h)))
    }

    /// Which application server hosts which active tasks.
    pub fn hosts(&self) -> BTreeMap<String, Vec<TaskId>> {
        let managers = self.shared.managers.lock().clone();
        for m in managers {
            if let Ok(t) = m.try_lock() {
                return t
                    .hosts()
                    .into_iter()
                    .map(|(h, ts)| (h, ts.into_iter().collect()))
                    .collect();
            }
        }
        BTreeMap::new()
    }

    /// The value of `key` in `store`, if its task is active on this instance.
    pub async fn get<K: Data, V: Data>(
        &self,
        store: &str,
        key: &K,
    ) -> Result<Option<V>, StreamsError> {
        let idx = self.store_index(store)?;
        let (task, kb) = self.task_for(idx, key)?;
        let managers = self.shared.managers.lock().clone();
        for m in managers {
            let t = m.lock().await;
            if let Some(v) = t.query(task, idx, &kb)? {
                return Ok(v.map(|v| cast::<V>(&v).clone()));
            }
        }
        Err(StreamsError::NotLocal {
            store: store.to_string(),
            host: self.host_for_key(store, key)?,
        })
    }

    /// Every entry of `store` in the tasks active on this instance.
    pub async fn all<K: Data, V: Data>(&self, store: &str) -> Result<Vec<(K, V)>, StreamsError> {
        self.range(store, None, None).await
    }

    /// The entries of `store` on this instance whose serialized key is in `[from, to)`,
    /// sorted by serialized key (for string keys, alphabetical order).
    pub async fn range<K: Data, V: Data>(
        &self,
        store: &str,
        from: Option<&K>,
        to: Option<&K>,
    ) -> Result<Vec<(K, V)>, StreamsError> {
        let idx = self.store_index(store)?;
        let def = &self.shared.topo.stores[idx];
        let bound = |k: Option<&K>| -> Result<Option<Bytes>, StreamsError> {
            match k {
                Some(k) => def
                    .key
                    .serialize(&(Arc::new(k.clone()) as Dyn))
                    .map_err(StreamsError::Serde),
                None => Ok(None),
            }
        };
        let (from, to) = (bound(from)?, bound(to)?);
        let managers = self.shared.managers.lock().clone();
        let mut out: Vec<(Bytes, K, V)> = Vec::new();
        for m in managers {
            let t = m.lock().await;
            for (k, v) in t.scan(idx, from.as_deref(), to.as_deref())? {
                let kb = def
                    .key
                    .serialize(&k)
                    .map_err(StreamsError::Serde)?
                    .unwrap_or_default();
                out.push((kb, cast::<K>(&k).clone(), cast::<V>(&v).clone()));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out.into_iter().map(|(_, k, v)| (k, v)).collect())
    }

    /// An HTTP API on `store` (see the module docs); `K` parses from the path, `V` is
    /// rendered as JSON.
    pub fn router<K, V>(&self, store: &str) -> Router
    where
        K: Data + FromStr + serde::Serialize,
        V: Data + serde::Serialize,
    {
        let state = (self.clone(), store.to_string());
        Router::new()
            .route("/stores/{store}/keys/{key}", get(get_key::<K, V>))
            .route("/stores/{store}/all", get(get_all::<K, V>))
            .route("/stores/{store}/range", get(get_range::<K, V>))
            .route("/metadata", get(metadata))
            .route("/metrics", get(metrics))
            .with_state(state)
    }
}

type QueryState = (Queries, String);

/// The instance's counters (`KafkaStreams::metrics_text`), for Prometheus.
async fn metrics(State((q, _)): State<QueryState>) -> Response {
    let snapshot = q.shared.metrics.snapshot();
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        super::render_metrics(&q.shared.config.application_id, &snapshot),
    )
        .into_response()
}

fn error(status: StatusCode, message: String) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

async fn get_key<K, V>(
    State((q, name)): State<QueryState>,
    Path((store, key)): Path<(String, String)>,
) -> Response
where
    K: Data + FromStr + serde::Serialize,
    V: Data + serde::Serialize,
{
    if store != name {
        return error(
            StatusCode::NOT_FOUND,
            format!("no queryable store '{store}'"),
        );
    }
    let Ok(k) = key.parse::<K>() else {
        return error(
            StatusCode::BAD_REQUEST,
            format!("'{key}' is not a key of '{store}'"),
        );
    };
    match q.get::<K, V>(&store, &k).await {
        Ok(Some(v)) => Json(serde_json::json!({ "key": k, "value": v })).into_response(),
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            format!("no key '{key}' in '{store}'"),
        ),
        Err(StreamsError::NotLocal {
            host: Some(host), ..
        }) => (
            StatusCode::TEMPORARY_REDIRECT,
            [(
                header::LOCATION,
                format!("http://{host}/stores/{store}/keys/{key}"),
            )],
        )
            .into_response(),
        Err(e @ StreamsError::NotLocal { .. }) => {
            error(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn get_all<K, V>(state: State<QueryState>, store: Path<String>) -> Response
where
    K: Data + FromStr + serde::Serialize,
    V: Data + serde::Serialize,
{
    get_range::<K, V>(state, store, Query(RangeParams::default())).await
}

/// `?from=&to=`: the key range, `to` excluded; either may be left out.
#[derive(Default, serde::Deserialize)]
struct RangeParams {
    from: Option<String>,
    to: Option<String>,
}

async fn get_range<K, V>(
    State((q, name)): State<QueryState>,
    Path(store): Path<String>,
    Query(params): Query<RangeParams>,
) -> Response
where
    K: Data + FromStr + serde::Serialize,
    V: Data + serde::Serialize,
{
    if store != name {
        return error(
            StatusCode::NOT_FOUND,
            format!("no queryable store '{store}'"),
        );
    }
    // A bound that does not parse as a key is the bad one, named in the answer.
    let parse = |s: &Option<String>| -> Result<Option<K>, String> {
        match s {
            Some(s) => s.parse::<K>().map(Some).map_err(|_| s.clone()),
            None => Ok(None),
        }
    };
    let (from, to) = match (parse(&params.from), parse(&params.to)) {
        (Ok(f), Ok(t)) => (f, t),
        (Err(bad), _) | (_, Err(bad)) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("'{bad}' is not a key of '{store}'"),
            )
        }
    };
    match q.range::<K, V>(&store, from.as_ref(), to.as_ref()).await {
        Ok(entries) => Json(
            entries
                .into_iter()
                .map(|(k, v)| serde_json::json!({ "key": k, "value": v }))
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn metadata(State((q, _)): State<QueryState>) -> Response {
    let hosts: BTreeMap<String, Vec<String>> = q
        .hosts()
        .into_iter()
        .map(|(h, ts)| (h, ts.iter().map(ToString::to_string).collect()))
        .collect();
    Json(serde_json::json!({ "hosts": hosts })).into_response()
}
