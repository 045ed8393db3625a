//! What the console changes: create and delete topics, change a topic's configs, reset a
//! group's offsets (a preview first, then apply). Each goes through the same path as the
//! Kafka API does (the controller for topics and configs, the group coordinator's
//! OffsetCommit for offsets), so it is validated the same.
//!
//! With the authoriser on (`--authorizer`) each change needs the ACL its Kafka request would
//! need, for the signed-in user ([`super::login`]); a form not posted from the console's own
//! pages is refused ([`same_site`]).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Arc;

use axum::extract::{Form, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::{GroupId, OffsetCommitRequest};
use metadata_quorum::acl::{operation, resource};
use metadata_quorum::controller::{ConfigOp, NewTopic, TopicRef};
use serde::Deserialize;
use strom_storage::TopicPartition;

use super::login::Viewer;
use super::{denied, esc, join, page, url, Nav};
use crate::security::authorizer::CLUSTER_NAME;
use crate::Broker;

/// The create-topic form under the topics table.
pub const CREATE_TOPIC_FORM: &str = "<h2 id=\"create\">Create a topic</h2>\
<form method=\"post\" action=\"/ui/topics\" aria-labelledby=\"create\">\
<label>Name<input name=\"name\" required></label>\
<label>Partitions<input name=\"partitions\" inputmode=\"numeric\" placeholder=\"broker default\"></label>\
<label>Replication factor<input name=\"replication_factor\" inputmode=\"numeric\" placeholder=\"broker default\"></label>\
<label>Configs (name=value, one a line)<textarea name=\"configs\" rows=\"2\" cols=\"30\"></textarea></label>\
<button type=\"submit\">Create</button></form>";

/// The delete form on a topic's page: the name must be typed again.
pub fn delete_topic_form(name: &str) -> String {
    format!(
        "<h2 id=\"delete\">Delete this topic</h2>\
         <form method=\"post\" action=\"/ui/topics/{}/delete\" aria-labelledby=\"delete\">\
         <label>Type the topic's name to confirm<input name=\"confirm\" required autocomplete=\"off\"></label>\
         <button type=\"submit\">Delete topic and all its records</button></form>",
        url(name)
    )
}

/// Why a change is refused before it is looked at: the form came from another site, or the
/// signed-in user's ACLs do not allow it (`allowed` false; `what` says what it was).
fn refused(
    b: &Broker,
    viewer: &Viewer,
    headers: &HeaderMap,
    allowed: bool,
    what: &str,
) -> Option<Response> {
    if !same_site(b, headers) {
        return Some(failure(
            b,
            viewer,
            StatusCode::FORBIDDEN,
            "Changes",
            "Refused: the form did not come from this console (its Origin does not match, or \
             the page was reached under a name this broker does not answer to).",
        ));
    }
    if !allowed {
        return Some(denied(b, viewer, Nav::Topics, what));
    }
    None
}

/// Whether a POST comes from this console's own pages: the browser says the request is
/// same-origin (`Origin` equal to the `Host` it was sent to), and that host is one this broker
/// is reached by (an IP address, `localhost`, or its registered HTTP host), so a page on
/// another site cannot post here, not even through a DNS name rebound to this address.
pub(super) fn same_site(b: &Broker, headers: &HeaderMap) -> bool {
    let get = |h| {
        headers
            .get(h)
            .and_then(|v: &header::HeaderValue| v.to_str().ok())
    };
    let (Some(host), Some(origin)) = (get(header::HOST), get(header::ORIGIN)) else {
        return false;
    };
    let same = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .is_some_and(|rest| rest == host);
    let name = host
        .rsplit_once(':')
        .map_or(host, |(n, _)| n)
        .trim_start_matches('[')
        .trim_end_matches(']');
    let ours = name.parse::<std::net::IpAddr>().is_ok()
        || name.eq_ignore_ascii_case("localhost")
        || b.image()
            .brokers
            .get(&b.node_id)
            .and_then(|me| me.endpoint("http"))
            .is_some_and(|e| e.host.eq_ignore_ascii_case(name));
    same && ours
}

fn failure(b: &Broker, viewer: &Viewer, status: StatusCode, what: &str, message: &str) -> Response {
    (
        status,
        page(
            b,
            Some(viewer),
            &format!("{what} refused"),
            Nav::Topics,
            false,
            &format!(
                "<p role=\"alert\">{}</p><p><a href=\"javascript:history.back()\">Back</a></p>",
                esc(message)
            ),
        ),
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
pub struct CreateForm {
    name: String,
    #[serde(default)]
    partitions: String,
    #[serde(default)]
    replication_factor: String,
    #[serde(default)]
    configs: String,
}

/// An optional number field: empty is the broker default (-1).
fn number<T: std::str::FromStr>(field: &str, v: &str, default: T) -> Result<T, String> {
    let v = v.trim();
    if v.is_empty() {
        return Ok(default);
    }
    v.parse()
        .map_err(|_| format!("{field} '{v}' is not a whole number"))
}

fn parse_create(f: &CreateForm) -> Result<NewTopic, String> {
    let name = f.name.trim();
    if name.is_empty() {
        return Err("a topic needs a name".into());
    }
    let mut configs = BTreeMap::new();
    for line in f.configs.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let (k, v) = line
            .split_once('=')
            .ok_or_else(|| format!("config line '{line}' is not name=value"))?;
        configs.insert(k.trim().to_string(), v.trim().to_string());
    }
    Ok(NewTopic {
        name: name.to_string(),
        num_partitions: number("partitions", &f.partitions, -1)?,
        replication_factor: number("replication factor", &f.replication_factor, -1)?,
        assignments: BTreeMap::new(),
        configs,
    })
}

/// POST /ui/topics: creates the topic through the controller (as CreateTopics does), then
/// shows it.
pub async fn create_topic(
    State(b): State<Arc<Broker>>,
    viewer: Viewer,
    headers: HeaderMap,
    Form(f): Form<CreateForm>,
) -> Response {
    // As CreateTopics: Create on the cluster, or on the topic.
    let name = f.name.trim();
    let allowed = viewer.may(&b, operation::CREATE, resource::CLUSTER, CLUSTER_NAME)
        || viewer.may(&b, operation::CREATE, resource::TOPIC, name);
    let what = format!("create topic '{name}'");
    if let Some(r) = refused(&b, &viewer, &headers, allowed, &what) {
        return r;
    }
    let topic = match parse_create(&f) {
        Ok(t) => t,
        Err(e) => {
            return failure(
                &b,
                &viewer,
                StatusCode::BAD_REQUEST,
                "Creating the topic",
                &e,
            )
        }
    };
    let name = topic.name.clone();
    match b.controller.create_topics(vec![topic], false).await {
        Ok(mut results) => match results.pop() {
            Some(Ok(_)) => {
                tracing::info!(topic = %name, "topic created from the console");
                Redirect::to(&format!("/ui/topics/{}", url(&name))).into_response()
            }
            Some(Err(e)) => failure(
                &b,
                &viewer,
                StatusCode::BAD_REQUEST,
                "Creating the topic",
                &e.to_string(),
            ),
            None => failure(
                &b,
                &viewer,
                StatusCode::INTERNAL_SERVER_ERROR,
                "Creating the topic",
                "no answer",
            ),
        },
        Err(e) => failure(
            &b,
            &viewer,
            StatusCode::SERVICE_UNAVAILABLE,
            "Creating the topic",
            &e.to_string(),
        ),
    }
}

#[derive(Debug, Deserialize)]
pub struct DeleteForm {
    #[serde(default)]
    confirm: String,
}

/// POST /ui/topics/{name}/delete: deletes it through the controller once its name was typed.
pub async fn delete_topic(
    State(b): State<Arc<Broker>>,
    viewer: Viewer,
    Path(name): Path<String>,
    headers: HeaderMap,
    Form(f): Form<DeleteForm>,
) -> Response {
    let allowed = viewer.may(&b, operation::DELETE, resource::TOPIC, &name);
    let what = format!("delete topic '{name}'");
    if let Some(r) = refused(&b, &viewer, &headers, allowed, &what) {
        return r;
    }
    if f.confirm.trim() != name {
        return failure(
            &b,
            &viewer,
            StatusCode::BAD_REQUEST,
            "Deleting the topic",
            &format!("the name typed does not match '{name}': nothing was deleted"),
        );
    }
    match b
        .controller
        .delete_topics(vec![TopicRef::Name(name.clone())])
        .await
    {
        Ok(mut results) => match results.pop() {
            Some(Ok(_)) => {
                tracing::info!(topic = %name, "topic deleted from the console");
                Redirect::to("/ui/topics").into_response()
            }
            Some(Err(e)) => failure(
                &b,
                &viewer,
                StatusCode::BAD_REQUEST,
                "Deleting the topic",
                &e.to_string(),
            ),
            None => failure(
                &b,
                &viewer,
                StatusCode::INTERNAL_SERVER_ERROR,
                "Deleting the topic",
                "no answer",
            ),
        },
        Err(e) => failure(
            &b,
            &viewer,
            StatusCode::SERVICE_UNAVAILABLE,
            "Deleting the topic",
            &e.to_string(),
        ),
    }
}

/// The config form on a topic's page: names to set and names to remove (back to the
/// broker's default), as kafka-configs.sh --alter --add-config / --delete-config.
pub fn alter_configs_form(name: &str) -> String {
    format!(
        "<h2 id=\"alter\">Change configs</h2>\
         <form method=\"post\" action=\"/ui/topics/{}/configs\" aria-labelledby=\"alter\">\
         <label>Set (name=value, one a line)<textarea name=\"set\" rows=\"2\" cols=\"30\"></textarea></label>\
         <label>Remove, back to the default (names, one a line)<textarea name=\"remove\" rows=\"2\" cols=\"30\"></textarea></label>\
         <button type=\"submit\">Apply</button></form>",
        url(name)
    )
}

#[derive(Debug, Deserialize)]
pub struct ConfigsForm {
    #[serde(default)]
    set: String,
    #[serde(default)]
    remove: String,
}

/// The form's changes as IncrementalAlterConfigs operations.
fn parse_config_ops(f: &ConfigsForm) -> Result<Vec<ConfigOp>, String> {
    let lines = |s: &str| {
        s.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let mut ops = Vec::new();
    for line in lines(&f.set) {
        let (k, v) = line
            .split_once('=')
            .ok_or_else(|| format!("config line '{line}' is not name=value"))?;
        ops.push(ConfigOp::Set {
            key: k.trim().to_string(),
            value: v.trim().to_string(),
        });
    }
    for key in lines(&f.remove) {
        if key.contains('=') {
            return Err(format!("'{key}' to remove is a name, not name=value"));
        }
        ops.push(ConfigOp::Delete { key });
    }
    if ops.is_empty() {
        return Err("nothing to change: give configs to set or to remove".into());
    }
    Ok(ops)
}

/// POST /ui/topics/{name}/configs: applies the changes through the controller, as
/// IncrementalAlterConfigs does (all of them or none), then shows the topic.
pub async fn alter_configs(
    State(b): State<Arc<Broker>>,
    viewer: Viewer,
    Path(name): Path<String>,
    headers: HeaderMap,
    Form(f): Form<ConfigsForm>,
) -> Response {
    let allowed = viewer.may(&b, operation::ALTER_CONFIGS, resource::TOPIC, &name);
    let what = format!("alter the configs of topic '{name}'");
    if let Some(r) = refused(&b, &viewer, &headers, allowed, &what) {
        return r;
    }
    let what = "Changing configs";
    let ops = match parse_config_ops(&f) {
        Ok(ops) => ops,
        Err(e) => return failure(&b, &viewer, StatusCode::BAD_REQUEST, what, &e),
    };
    match b
        .controller
        .alter_configs(name.clone(), ops, false, false)
        .await
    {
        Ok(Ok(())) => {
            tracing::info!(topic = %name, user = viewer.principal().unwrap_or("-"), "topic configs changed from the console");
            Redirect::to(&format!("/ui/topics/{}", url(&name))).into_response()
        }
        Ok(Err(e)) => failure(&b, &viewer, StatusCode::BAD_REQUEST, what, &e.to_string()),
        Err(e) => failure(
            &b,
            &viewer,
            StatusCode::SERVICE_UNAVAILABLE,
            what,
            &e.to_string(),
        ),
    }
}

/// Where to move a group's offsets (kafka-consumer-groups.sh's --to-earliest, --to-latest,
/// --to-offset, --to-datetime as milliseconds).
#[derive(Debug, Default, Deserialize)]
pub struct ResetQuery {
    #[serde(default)]
    topic: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    value: String,
}

/// One partition's move: (partition, current committed offset, new offset).
type Move = (i32, Option<i64>, i64);

/// The new offset of each partition of `topic` this broker holds a replica of, clamped to
/// the log (earliest: log start; latest: high watermark).
fn plan(b: &Broker, group: &str, q: &ResetQuery) -> Result<Vec<Move>, String> {
    let image = b.image();
    let t = image
        .topic(q.topic.trim())
        .ok_or_else(|| format!("topic '{}' does not exist", q.topic.trim()))?;
    let committed: BTreeMap<i32, i64> = b
        .group_lag(group)
        .into_iter()
        .filter(|o| o.topic == t.name)
        .map(|o| (o.partition, o.committed.offset))
        .collect();
    let value = || {
        q.value
            .trim()
            .parse::<i64>()
            .map_err(|_| format!("'{}' is not a whole number", q.value.trim()))
    };
    let mut out = Vec::new();
    for p in &t.partitions {
        let log = b
            .logs
            .get(&TopicPartition::new(t.topic_id, p.partition))
            .ok_or_else(|| {
                format!(
                    "broker {} holds no replica of {}-{}: reset from a broker holding every partition (replicas: {})",
                    b.node_id,
                    t.name,
                    p.partition,
                    join(&p.replicas)
                )
            })?;
        let start = log.state().log_start_offset;
        let end = log.high_watermark();
        let new = match q.to.as_str() {
            "earliest" => start,
            "latest" => end,
            "offset" => value()?,
            "timestamp" => log
                .offset_for_timestamp(value()?)
                .map_err(|e| e.to_string())?
                .map_or(end, |o| o.offset),
            other => return Err(format!("unknown target '{other}'")),
        };
        let partition = p.partition as i32;
        out.push((
            partition,
            committed.get(&partition).copied(),
            new.clamp(start, end),
        ));
    }
    Ok(out)
}

fn reset_form(b: &Broker, viewer: &Viewer, group: &str, q: &ResetQuery) -> String {
    let image = b.image();
    let mut topics: Vec<String> = b.group_lag(group).into_iter().map(|o| o.topic).collect();
    topics.dedup();
    if topics.is_empty() {
        topics = image
            .topics()
            .filter(|t| !t.is_internal())
            .map(|t| t.name.clone())
            .collect();
    }
    topics.retain(|t| viewer.may(b, operation::DESCRIBE, resource::TOPIC, t));
    let mut out = format!(
        "<form method=\"get\" action=\"/ui/groups/{}/reset\" aria-label=\"Offsets to preview\"><label>Topic<select name=\"topic\">",
        url(group)
    );
    for t in &topics {
        let _ = write!(
            out,
            "<option{}>{}</option>",
            if *t == q.topic { " selected" } else { "" },
            esc(t)
        );
    }
    out.push_str("</select></label><label>To<select name=\"to\">");
    for (v, text) in [
        ("earliest", "earliest (log start)"),
        ("latest", "latest (high watermark)"),
        ("offset", "an offset"),
        ("timestamp", "a timestamp (ms)"),
    ] {
        let _ = write!(
            out,
            "<option value=\"{v}\"{}>{text}</option>",
            if q.to == v { " selected" } else { "" }
        );
    }
    let _ = write!(
        out,
        "</select></label><label>Offset or timestamp<input name=\"value\" value=\"{}\" inputmode=\"numeric\"></label>\
         <button type=\"submit\">Preview</button></form>",
        esc(&q.value)
    );
    out
}

/// Whether the viewer may move `group`'s offsets of `topic`: as OffsetCommit, Read on both.
fn may_reset(b: &Broker, viewer: &Viewer, group: &str, topic: &str) -> bool {
    viewer.may(b, operation::READ, resource::GROUP, group)
        && (topic.is_empty() || viewer.may(b, operation::READ, resource::TOPIC, topic.trim()))
}

/// GET /ui/groups/{id}/reset: the form, and with a target the preview of every partition's
/// move and the button that applies it.
pub async fn reset_preview(
    State(b): State<Arc<Broker>>,
    viewer: Viewer,
    Path(group): Path<String>,
    Query(q): Query<ResetQuery>,
) -> Response {
    if !may_reset(&b, &viewer, &group, &q.topic) {
        let what = format!(
            "reset the offsets of group '{group}' on topic '{}'",
            q.topic
        );
        return denied(&b, &viewer, Nav::Groups, &what);
    }
    let mut body = format!(
        "<p><a href=\"/ui/groups/{}\">Back to group {}</a></p>",
        url(&group),
        esc(&group)
    );
    body.push_str(&reset_form(&b, &viewer, &group, &q));
    if !q.to.is_empty() {
        match plan(&b, &group, &q) {
            Err(e) => {
                let _ = write!(body, "<p role=\"alert\">{}</p>", esc(&e));
            }
            Ok(moves) => {
                let _ = write!(
                    body,
                    "<table><caption>Preview: offsets of {} for group {}</caption><thead><tr>\
                     <th scope=\"col\">Partition</th><th scope=\"col\">Committed now</th><th scope=\"col\">After the reset</th></tr></thead><tbody>",
                    esc(&q.topic),
                    esc(&group)
                );
                for (p, current, new) in &moves {
                    let _ = write!(
                        body,
                        "<tr><th scope=\"row\">{p}</th><td class=\"num\">{}</td><td class=\"num\">{new}</td></tr>",
                        current.map_or_else(|| "none".to_string(), |c| c.to_string())
                    );
                }
                let _ = write!(
                    body,
                    "</tbody></table><form method=\"post\" action=\"/ui/groups/{}/reset?topic={}&amp;to={}&amp;value={}\">\
                     <button type=\"submit\">Apply this reset</button></form>",
                    url(&group),
                    url(&q.topic),
                    url(&q.to),
                    url(&q.value)
                );
            }
        }
    }
    page(
        &b,
        Some(&viewer),
        &format!("Reset offsets of {group}"),
        Nav::Groups,
        false,
        &body,
    )
    .into_response()
}

/// POST /ui/groups/{id}/reset: commits the previewed offsets through the coordinator's
/// OffsetCommit (generation -1, as an admin client does), which refuses while the group has
/// members.
pub async fn reset_apply(
    State(b): State<Arc<Broker>>,
    viewer: Viewer,
    Path(group): Path<String>,
    Query(q): Query<ResetQuery>,
    headers: HeaderMap,
) -> Response {
    let allowed = !q.topic.trim().is_empty() && may_reset(&b, &viewer, &group, &q.topic);
    let what = format!(
        "reset the offsets of group '{group}' on topic '{}'",
        q.topic
    );
    if let Some(r) = refused(&b, &viewer, &headers, allowed, &what) {
        return r;
    }
    let moves = match plan(&b, &group, &q) {
        Ok(m) => m,
        Err(e) => {
            return failure(
                &b,
                &viewer,
                StatusCode::BAD_REQUEST,
                "Resetting offsets",
                &e,
            )
        }
    };
    let req = OffsetCommitRequest::default()
        .with_group_id(GroupId(crate::handlers::str_bytes(group.clone())))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(strom_client::cluster::topic_name(q.topic.trim()))
            .with_partitions(
                moves
                    .iter()
                    .map(|(p, _, new)| {
                        OffsetCommitRequestPartition::default()
                            .with_partition_index(*p)
                            .with_committed_offset(*new)
                    })
                    .collect(),
            )]);
    let answer = crate::handlers::groups::offset_commit(&b, req, 8, false).await;
    let errors: Vec<String> = answer
        .topics
        .iter()
        .flat_map(|t| &t.partitions)
        .filter(|p| p.error_code != 0)
        .map(|p| {
            format!(
                "partition {}: {}",
                p.partition_index,
                strom_client::error_name(p.error_code)
            )
        })
        .collect();
    if !errors.is_empty() {
        let hint = if errors.iter().any(|e| e.contains("UNKNOWN_MEMBER_ID")) {
            " (the group has members: stop its consumers first)"
        } else {
            ""
        };
        return failure(
            &b,
            &viewer,
            StatusCode::CONFLICT,
            "Resetting offsets",
            &format!("{}{hint}", errors.join("; ")),
        );
    }
    tracing::info!(group = %group, topic = %q.topic, to = %q.to, "offsets reset from the console");
    Redirect::to(&format!("/ui/groups/{}", url(&group))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(name: &str, partitions: &str, rf: &str, configs: &str) -> CreateForm {
        CreateForm {
            name: name.into(),
            partitions: partitions.into(),
            replication_factor: rf.into(),
            configs: configs.into(),
        }
    }

    #[test]
    fn the_config_form_sets_and_removes() {
        let f = |set: &str, remove: &str| ConfigsForm {
            set: set.into(),
            remove: remove.into(),
        };
        let ops =
            parse_config_ops(&f(" retention.ms = 1000 \n\n", "cleanup.policy\n")).expect("ops");
        assert_eq!(ops.len(), 2);
        assert!(
            matches!(&ops[0], ConfigOp::Set { key, value } if key == "retention.ms" && value == "1000")
        );
        assert!(matches!(&ops[1], ConfigOp::Delete { key } if key == "cleanup.policy"));
        assert!(parse_config_ops(&f("", " \n")).is_err_and(|e| e.contains("nothing")));
        assert!(parse_config_ops(&f("no-equals", "")).is_err_and(|e| e.contains("no-equals")));
        assert!(parse_config_ops(&f("", "a=b")).is_err_and(|e| e.contains("a=b")));
    }

    #[test]
    fn the_create_form_parses_defaults_numbers_and_configs() {
        let t = parse_create(&form(" orders ", "", "", "")).expect("defaults");
        assert_eq!(
            (t.name.as_str(), t.num_partitions, t.replication_factor),
            ("orders", -1, -1)
        );
        let t = parse_create(&form(
            "orders",
            "6",
            "3",
            "cleanup.policy=compact\n retention.ms = 1000 \n",
        ))
        .expect("full");
        assert_eq!((t.num_partitions, t.replication_factor), (6, 3));
        assert_eq!(t.configs["cleanup.policy"], "compact");
        assert_eq!(t.configs["retention.ms"], "1000");
        assert!(parse_create(&form("", "1", "1", "")).is_err());
        assert!(parse_create(&form("x", "six", "1", "")).is_err_and(|e| e.contains("six")));
        assert!(
            parse_create(&form("x", "1", "1", "no-equals")).is_err_and(|e| e.contains("no-equals"))
        );
    }
}
