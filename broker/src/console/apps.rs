//! Streams applications and Connect clusters, as the groups they form show them to their
//! coordinator (decision 0016).
//!
//! A Streams application is a consumer group whose members use the `strom-streams` assignor:
//! each member is a stream thread, its subscription names its process and
//! `application.server`, and its assignment its active and standby tasks (JSON user data,
//! `streams/src/runtime/assignor.rs`). A Connect cluster is a group with the `strom-connect`
//! assignor: each member is a worker with its REST URL and the cluster's config and status
//! topics (`connect/src/group.rs`); its connectors and their states are read from the
//! replicas of those compacted topics held here.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use bytes::Bytes;
use metadata_quorum::acl::{operation, resource};
use serde_json::Value as Json;
use strom_storage::TopicPartition;

use super::login::Viewer;
use super::{denied, esc, join, lag_table, page, read_records, url, visible_lag, Nav};
use crate::group::{
    consumer_assignment as assignment, consumer_subscription as subscription, GroupDescription,
};
use crate::Broker;

/// The assignor (group protocol) of Streams applications.
pub const STREAMS_PROTOCOL: &str = "strom-streams";
/// The assignor of Connect worker groups.
pub const CONNECT_PROTOCOL: &str = "strom-connect";

/// The most records read from one partition of a Connect topic for a page.
const MAX_RECORDS: usize = 100_000;

/// User data as JSON (`Null` when absent or not JSON).
fn user_json(data: Option<&Bytes>) -> Json {
    data.and_then(|d| serde_json::from_slice(d).ok())
        .unwrap_or(Json::Null)
}

/// Streams task ids (`[subtopology, partition]` pairs) as Kafka names them: `0_1, 1_0`.
fn tasks(v: &Json) -> String {
    let names: Vec<String> = v
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| Some(format!("{}_{}", t.get(0)?.as_u64()?, t.get(1)?.as_i64()?)))
        .collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

/// The groups coordinated here that use `protocol` and the viewer may describe.
fn groups_of(b: &Broker, viewer: &Viewer, protocol: &str) -> Vec<GroupDescription> {
    b.groups
        .list()
        .into_iter()
        .filter(|(id, _, _)| viewer.may(b, operation::DESCRIBE, resource::GROUP, id))
        .filter_map(|(id, _, _)| b.groups.describe(&id))
        .filter(|d| d.protocol == protocol)
        .collect()
}

/// A group's total lag over the topics the viewer may describe.
fn lag_of(b: &Broker, viewer: &Viewer, group: &str) -> i64 {
    visible_lag(b, viewer, group)
        .iter()
        .filter_map(|o| o.lag)
        .sum()
}

/// GET /ui/streams: the Streams applications whose group this broker coordinates.
pub async fn streams(State(b): State<Arc<Broker>>, viewer: Viewer) -> Html<String> {
    let mut body = format!(
        "<p>Streams applications coordinated by broker {} (an application is a consumer group \
         named by its <code>application.id</code>; each broker coordinates the groups whose \
         <code>__consumer_offsets</code> partition it leads).</p>\
         <table><caption>Streams applications</caption><thead><tr><th scope=\"col\">Application id</th>\
         <th scope=\"col\">State</th><th scope=\"col\">Processes</th><th scope=\"col\">Threads</th>\
         <th scope=\"col\">Active tasks</th><th scope=\"col\">Total lag</th></tr></thead><tbody>",
        b.node_id
    );
    let apps = groups_of(&b, &viewer, STREAMS_PROTOCOL);
    if apps.is_empty() {
        body.push_str("<tr><td colspan=\"6\">none</td></tr>");
    }
    for d in &apps {
        let mut processes: Vec<String> = Vec::new();
        let mut active = 0;
        for (_, _, _, _, meta, assigned) in &d.members {
            let sub = subscription(meta).map(|s| user_json(s.user_data.as_ref()));
            if let Some(p) = sub.as_ref().and_then(|s| s["process"].as_str()) {
                processes.push(p.to_string());
            }
            let a = assignment(assigned).map(|a| user_json(a.user_data.as_ref()));
            active += a
                .as_ref()
                .and_then(|a| a["active"].as_array().map(Vec::len))
                .unwrap_or(0);
        }
        processes.sort();
        processes.dedup();
        let _ = write!(
            body,
            "<tr><th scope=\"row\"><a href=\"/ui/streams/{}\">{}</a></th><td>{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{active}</td><td class=\"num\">{}</td></tr>",
            url(&d.group_id),
            esc(&d.group_id),
            d.state,
            processes.len(),
            d.members.len(),
            lag_of(&b, &viewer, &d.group_id),
        );
    }
    body.push_str("</tbody></table>");
    page(
        &b,
        Some(&viewer),
        "Streams applications",
        Nav::Streams,
        true,
        &body,
    )
}

/// GET /ui/streams/{id}: an application's threads with their tasks, and its input lag.
pub async fn streams_app(
    State(b): State<Arc<Broker>>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Response {
    if !viewer.may(&b, operation::DESCRIBE, resource::GROUP, &id) {
        return denied(&b, &viewer, Nav::Streams, &format!("describe group '{id}'"));
    }
    let Some(d) = b
        .groups
        .describe(&id)
        .filter(|d| d.protocol == STREAMS_PROTOCOL)
    else {
        let body = format!(
            "<p>No running Streams application '{}' is coordinated by broker {} (a stopped \
             application's offsets are on <a href=\"/ui/groups/{}\">its group's page</a>).</p>",
            esc(&id),
            b.node_id,
            url(&id)
        );
        return (
            StatusCode::NOT_FOUND,
            page(&b, Some(&viewer), "Not found", Nav::Streams, false, &body),
        )
            .into_response();
    };
    let mut body = format!(
        "<dl><dt>State</dt><dd>{}</dd><dt>Generation</dt><dd>{}</dd><dt>Threads</dt><dd>{}</dd>\
         <dt>Total lag</dt><dd id=\"total-lag\">{}</dd></dl>\
         <p><a href=\"/ui/groups/{}\">Its consumer group</a> (offsets, reset)</p>\
         <table><caption>Stream threads</caption><thead><tr><th scope=\"col\">Thread (client id)</th>\
         <th scope=\"col\">Process</th><th scope=\"col\">Host</th><th scope=\"col\">application.server</th>\
         <th scope=\"col\">Active tasks</th><th scope=\"col\">Standby tasks</th><th scope=\"col\">Partitions</th></tr></thead><tbody>",
        d.state,
        d.generation,
        d.members.len(),
        lag_of(&b, &viewer, &id),
        url(&id)
    );
    let mut rows: Vec<(String, String)> = Vec::new();
    for (_, _, client, host, meta, assigned) in &d.members {
        let sub = subscription(meta)
            .map(|s| user_json(s.user_data.as_ref()))
            .unwrap_or(Json::Null);
        let a = assignment(assigned);
        let data = a
            .as_ref()
            .map(|a| user_json(a.user_data.as_ref()))
            .unwrap_or(Json::Null);
        let partitions: Vec<String> = a
            .map(|a| {
                a.assigned_partitions
                    .into_iter()
                    .map(|tp| {
                        let topic = tp.topic.to_string();
                        format!("{topic} [{}]", join(&tp.partitions))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let process = sub["process"].as_str().unwrap_or("?").to_string();
        let row = format!(
            "<tr><th scope=\"row\">{}</th><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(client),
            esc(&process),
            esc(host),
            esc(sub["endpoint"].as_str().unwrap_or("—")),
            esc(&tasks(&data["active"])),
            esc(&tasks(&data["standby"])),
            esc(&partitions.join("; ")),
        );
        rows.push((format!("{process}/{client}"), row));
    }
    rows.sort();
    for (_, r) in rows {
        body.push_str(&r);
    }
    body.push_str("</tbody></table>");
    lag_table(
        &mut body,
        "Input lag",
        &visible_lag(&b, &viewer, &id),
        false,
    );
    page(
        &b,
        Some(&viewer),
        &format!("Streams application {id}"),
        Nav::Streams,
        true,
        &body,
    )
    .into_response()
}

/// What the Connect page read of a compacted topic: the latest value of each key in the
/// replicas held here (None: a tombstone), the partitions not held here, and those too long
/// to read whole (over [`MAX_RECORDS`] records).
#[derive(Default)]
struct Latest {
    values: BTreeMap<String, Option<Json>>,
    missing: Vec<i32>,
    truncated: Vec<i32>,
}

/// Reads a compacted topic from each held partition's start: compaction keeps a live key's
/// only record wherever it is, so the whole log matters, not its tail.
fn latest_values(b: &Broker, topic: &str) -> Latest {
    let mut out = Latest::default();
    let image = b.image();
    let Some(t) = image.topic(topic) else {
        return out;
    };
    for p in &t.partitions {
        let Some(log) = b.logs.get(&TopicPartition::new(t.topic_id, p.partition)) else {
            out.missing.push(p.partition as i32);
            continue;
        };
        let start = log.state().log_start_offset;
        if log.high_watermark() - start > MAX_RECORDS as i64 {
            out.truncated.push(p.partition as i32);
        }
        for r in read_records(&log, start, MAX_RECORDS).unwrap_or_default() {
            let Some(key) = r
                .key
                .as_ref()
                .map(|k| String::from_utf8_lossy(k).into_owned())
            else {
                continue;
            };
            let value = r
                .value
                .as_ref()
                .and_then(|v| serde_json::from_slice(v).ok());
            out.values.insert(key, value);
        }
    }
    out
}

/// One connector as the config and status topics say.
#[derive(Default)]
struct Connector {
    class: String,
    target: String,
    state: String,
    worker: String,
    tasks: BTreeMap<u64, (String, String)>,
}

/// The connectors of a Connect cluster from its config and status topics' latest values.
fn connectors(
    configs: &BTreeMap<String, Option<Json>>,
    statuses: &BTreeMap<String, Option<Json>>,
) -> BTreeMap<String, Connector> {
    let mut out: BTreeMap<String, Connector> = BTreeMap::new();
    for (k, v) in configs {
        if let (Some(name), Some(v)) = (k.strip_prefix("connector-"), v) {
            let c = out.entry(name.to_string()).or_default();
            c.class = v["properties"]["connector.class"]
                .as_str()
                .unwrap_or("?")
                .to_string();
        }
    }
    for (k, v) in configs {
        if let (Some(name), Some(v)) = (k.strip_prefix("target-state-"), v) {
            if let Some(c) = out.get_mut(name) {
                c.target = v["state"].as_str().unwrap_or("").to_string();
            }
        }
    }
    for (k, v) in statuses {
        let Some(v) = v else { continue };
        let state = v["state"].as_str().unwrap_or("?").to_string();
        let worker = v["worker_id"].as_str().unwrap_or("?").to_string();
        if let Some(name) = k.strip_prefix("status-connector-") {
            if let Some(c) = out.get_mut(name) {
                c.state = state;
                c.worker = worker;
            }
        } else if let Some((name, id)) = k
            .strip_prefix("status-task-")
            .and_then(|r| r.rsplit_once('-'))
        {
            if let (Some(c), Ok(id)) = (out.get_mut(name), id.parse::<u64>()) {
                c.tasks.insert(id, (state, worker));
            }
        }
    }
    out
}

/// GET /ui/connect: the Connect clusters whose worker group this broker coordinates, their
/// workers, and their connectors and tasks with states.
pub async fn connect(State(b): State<Arc<Broker>>, viewer: Viewer) -> Html<String> {
    let clusters = groups_of(&b, &viewer, CONNECT_PROTOCOL);
    let mut body = format!(
        "<p>Connect clusters coordinated by broker {} (a cluster is the group its workers' \
         <code>group.id</code> names).</p>",
        b.node_id
    );
    if clusters.is_empty() {
        body.push_str("<p>None.</p>");
    }
    for d in &clusters {
        let mut workers = Vec::new();
        let (mut config_topic, mut status_topic) = (None, None);
        let mut leader_url = None;
        for (member, _, _, host, meta, assigned) in &d.members {
            let sub = subscription(meta)
                .map(|s| user_json(s.user_data.as_ref()))
                .unwrap_or(Json::Null);
            config_topic =
                config_topic.or_else(|| sub["config_topic"].as_str().map(str::to_string));
            status_topic =
                status_topic.or_else(|| sub["status_topic"].as_str().map(str::to_string));
            leader_url = leader_url.or_else(|| {
                let a = assignment(assigned)?;
                user_json(a.user_data.as_ref())["leader_url"]
                    .as_str()
                    .map(str::to_string)
            });
            workers.push((
                sub["id"].as_str().unwrap_or(member.as_str()).to_string(),
                sub["url"].as_str().unwrap_or("").to_string(),
                host.clone(),
            ));
        }
        workers.sort();
        let _ = write!(
            body,
            "<h2>Connect cluster {}</h2><dl><dt>State</dt><dd>{}</dd><dt>Generation</dt><dd>{}</dd>\
             <dt>Config topic</dt><dd>{}</dd><dt>Status topic</dt><dd>{}</dd></dl>\
             <table><caption>Workers of {}</caption><thead><tr><th scope=\"col\">Worker id</th>\
             <th scope=\"col\">REST API</th><th scope=\"col\">Host</th><th scope=\"col\">Role</th></tr></thead><tbody>",
            esc(&d.group_id),
            d.state,
            d.generation,
            esc(config_topic.as_deref().unwrap_or("not known")),
            esc(status_topic.as_deref().unwrap_or("not known")),
            esc(&d.group_id),
        );
        for (id, rest, host) in &workers {
            let link = if rest.starts_with("http://") || rest.starts_with("https://") {
                format!(
                    "<a href=\"{}/connectors?expand=status\">{}</a>",
                    esc(rest.trim_end_matches('/')),
                    esc(rest)
                )
            } else {
                esc(rest)
            };
            let role = if leader_url.as_deref() == Some(rest.as_str()) {
                "leader"
            } else {
                "member"
            };
            let _ = write!(
                body,
                "<tr><th scope=\"row\">{}</th><td>{link}</td><td>{}</td><td>{role}</td></tr>",
                esc(id),
                esc(host)
            );
        }
        body.push_str("</tbody></table>");
        let (Some(ct), Some(st)) = (config_topic, status_topic) else {
            continue;
        };
        let readable = |t: &str| viewer.may(&b, operation::READ, resource::TOPIC, t);
        if !readable(&ct) || !readable(&st) {
            let _ = write!(
                body,
                "<p>{} may not read {} and {}: connectors are not shown.</p>",
                esc(viewer.principal().unwrap_or("This user")),
                esc(&ct),
                esc(&st)
            );
            continue;
        }
        let configs = latest_values(&b, &ct);
        let statuses = latest_values(&b, &st);
        let list = connectors(&configs.values, &statuses.values);
        let _ = write!(
            body,
            "<table><caption>Connectors of {}</caption><thead><tr><th scope=\"col\">Connector</th>\
             <th scope=\"col\">Class</th><th scope=\"col\">State</th><th scope=\"col\">Worker</th>\
             <th scope=\"col\">Tasks</th></tr></thead><tbody>",
            esc(&d.group_id)
        );
        if list.is_empty() {
            body.push_str("<tr><td colspan=\"5\">none</td></tr>");
        }
        for (name, c) in &list {
            let state = match (c.state.as_str(), c.target.as_str()) {
                ("", _) => "not reported yet".to_string(),
                (s, "PAUSED" | "STOPPED") if s != c.target => {
                    format!("{s} (asked: {})", c.target)
                }
                (s, _) => s.to_string(),
            };
            let class = match c.state.as_str() {
                "FAILED" => " class=\"bad\"",
                "RUNNING" => " class=\"ok\"",
                _ => "",
            };
            let tasks: Vec<String> = c
                .tasks
                .iter()
                .map(|(id, (s, w))| format!("{id}: {s} on {w}"))
                .collect();
            let _ = write!(
                body,
                "<tr><th scope=\"row\">{}</th><td>{}</td><td{class}>{}</td><td>{}</td><td>{}</td></tr>",
                esc(name),
                esc(&c.class),
                esc(&state),
                esc(&c.worker),
                esc(&if tasks.is_empty() { "none".into() } else { tasks.join("; ") }),
            );
        }
        body.push_str("</tbody></table>");
        if !configs.missing.is_empty() || !statuses.missing.is_empty() {
            let _ = write!(
                body,
                "<p>Broker {} holds no replica of {} partition(s) {} and {} partition(s) {}: \
                 connectors or states kept there are not shown here.</p>",
                b.node_id,
                esc(&ct),
                join(&configs.missing),
                esc(&st),
                join(&statuses.missing)
            );
        }
        if !configs.truncated.is_empty() || !statuses.truncated.is_empty() {
            let _ = write!(
                body,
                "<p role=\"alert\">Partitions {} of {} and {} of {} hold over {MAX_RECORDS} records; \
                 only their first {MAX_RECORDS} were read, so states shown may be old.</p>",
                join(&configs.truncated),
                esc(&ct),
                join(&statuses.truncated),
                esc(&st)
            );
        }
    }
    // Not refreshed live: each view reads the config and status topics.
    page(&b, Some(&viewer), "Connect", Nav::Connect, false, &body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn task_ids_are_named_as_kafka_names_them() {
        assert_eq!(tasks(&json!([[0, 1], [2, 0]])), "0_1, 2_0");
        assert_eq!(tasks(&json!([])), "none");
        assert_eq!(tasks(&Json::Null), "none");
    }

    #[test]
    fn connectors_come_from_the_config_and_status_topics() {
        let configs: BTreeMap<String, Option<Json>> = [
            (
                "connector-a".to_string(),
                Some(json!({"properties": {"connector.class": "FileStreamSource"}})),
            ),
            ("connector-gone".to_string(), None),
            (
                "target-state-a".to_string(),
                Some(json!({"state": "PAUSED"})),
            ),
        ]
        .into();
        let statuses: BTreeMap<String, Option<Json>> = [
            (
                "status-connector-a".to_string(),
                Some(json!({"state": "RUNNING", "worker_id": "w1"})),
            ),
            (
                "status-task-a-0".to_string(),
                Some(json!({"state": "FAILED", "worker_id": "w2"})),
            ),
            (
                "status-task-gone-0".to_string(),
                Some(json!({"state": "RUNNING", "worker_id": "w2"})),
            ),
        ]
        .into();
        let list = connectors(&configs, &statuses);
        assert_eq!(list.keys().collect::<Vec<_>>(), vec!["a"]);
        let a = &list["a"];
        assert_eq!(
            (
                a.class.as_str(),
                a.target.as_str(),
                a.state.as_str(),
                a.worker.as_str()
            ),
            ("FileStreamSource", "PAUSED", "RUNNING", "w1")
        );
        assert_eq!(a.tasks[&0], ("FAILED".to_string(), "w2".to_string()));
    }
}
