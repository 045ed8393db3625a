//! The web console at `/ui` on every broker's HTTP port (issue #19, decision 0016): the
//! cluster, topics with their replicas and ISR, a message browser, consumer groups with lag,
//! and the metadata event timeline live over server-sent events.
//!
//! Pages are HTML rendered here from the broker's own state, usable without JavaScript; a few
//! lines of script refresh the live pages in place and follow the event stream. Status is
//! always written as a word ("under-replicated", "offline"), never shown by colour alone.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt::Write;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use kafka_protocol::records::{Record, RecordBatchDecoder};
use metadata_quorum::quorum::api::EventsPage;
use metadata_quorum::{LoggedRecord, MetadataImage, PartitionImage, TopicImage};
use serde::Deserialize;
use strom_storage::TopicPartition;

use crate::log::ReadLimit;
use crate::Broker;
use login::Viewer;
use metadata_quorum::acl::{operation, resource};

mod actions;
mod apps;
mod login;

pub use login::Logins;

/// The console's routes, merged into the HTTP API's router.
pub fn routes() -> Router<Arc<Broker>> {
    Router::new()
        .route("/ui", get(|| async { Redirect::to("/ui/cluster") }))
        .route("/ui/cluster", get(cluster))
        .route("/ui/topics", get(topics))
        .route("/ui/topics/{name}", get(topic))
        .route("/ui/topics/{name}/messages", get(messages))
        .route("/ui/groups", get(groups))
        .route("/ui/groups/{id}", get(group))
        .route("/ui/streams", get(apps::streams))
        .route("/ui/streams/{id}", get(apps::streams_app))
        .route("/ui/connect", get(apps::connect))
        .route("/ui/events", get(events))
        .route("/ui/events/stream", get(event_stream))
        .route("/ui/login", get(login::login_form).post(login::login))
        .route("/ui/logout", axum::routing::post(login::logout))
        .route("/ui/topics", axum::routing::post(actions::create_topic))
        .route(
            "/ui/topics/{name}/configs",
            axum::routing::post(actions::alter_configs),
        )
        .route(
            "/ui/topics/{name}/delete",
            axum::routing::post(actions::delete_topic),
        )
        .route(
            "/ui/groups/{id}/reset",
            get(actions::reset_preview).post(actions::reset_apply),
        )
}

/// HTML-escapes `s` for text and attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes a path segment or query value.
fn url(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

const STYLE: &str = "
body{font-family:system-ui,sans-serif;margin:0;color:#111;background:#fff;line-height:1.4}
a{color:#0645ad}
header{background:#1f2937;color:#fff;padding:.5rem 1rem;display:flex;gap:1.5rem;align-items:center;flex-wrap:wrap}
header a{color:#fff;text-decoration:none;padding:.25rem .5rem}
header a[aria-current=page]{border-bottom:3px solid #fbbf24;font-weight:bold}
main{padding:1rem}
table{border-collapse:collapse;margin:.5rem 0 1.5rem}
caption{text-align:left;font-weight:bold;padding:.25rem 0}
th,td{border:1px solid #999;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#eee}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.bad{background:#fee2e2;font-weight:bold}
.warn{background:#fef3c7;font-weight:bold}
.ok{background:#dcfce7}
dl{display:grid;grid-template-columns:max-content auto;gap:.25rem 1rem}
dt{font-weight:bold}
form{display:flex;gap:.75rem;flex-wrap:wrap;align-items:end;margin:.5rem 0 1rem}
label{display:flex;flex-direction:column;font-size:.9rem}
pre{margin:0;white-space:pre-wrap;word-break:break-all;max-width:40rem}
.skip{position:absolute;left:-999px}.skip:focus{left:1rem;top:1rem;background:#fff;color:#000;padding:.5rem}
";

/// Refreshes `main[data-live]` in place every two seconds (without reloading the page, so
/// focus and scroll stay), and follows the event stream on the timeline page.
const SCRIPT: &str = "
const live=document.querySelector('main[data-live]');
const editing=()=>[...live.querySelectorAll('input,textarea,select')].some(e=>e===document.activeElement||
(e.value!==undefined&&e.defaultValue!==undefined&&e.value!==e.defaultValue));
if(live){setInterval(async()=>{if(editing())return;try{const r=await fetch(location.href);if(!r.ok)return;
const d=new DOMParser().parseFromString(await r.text(),'text/html');const m=d.querySelector('main');
if(m)live.innerHTML=m.innerHTML;}catch(e){}},2000);}
const tl=document.getElementById('timeline');
if(tl&&window.EventSource){const es=new EventSource('/ui/events/stream?from='+tl.dataset.next);
es.addEventListener('record',ev=>{const e=JSON.parse(ev.data);const tr=document.createElement('tr');
for(const v of [e.offset,new Date(e.timestamp_ms).toISOString(),e.kind,e.detail]){const td=document.createElement('td');
td.textContent=v;tr.appendChild(td);}tl.prepend(tr);document.getElementById('live-status').textContent='live: '+(e.offset+1)+' records';});}
";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Nav {
    /// No page of the navigation (signing in).
    None,
    Cluster,
    Topics,
    Groups,
    Streams,
    Connect,
    Events,
}

/// A whole page: navigation, who is signed in (with the authoriser on), `body` in `<main>`
/// (refreshed in place when `live`).
fn page(
    broker: &Broker,
    viewer: Option<&Viewer>,
    title: &str,
    nav: Nav,
    live: bool,
    body: &str,
) -> Html<String> {
    let link = |n: Nav, href: &str, text: &str| {
        let current = if n == nav {
            " aria-current=\"page\""
        } else {
            ""
        };
        format!("<a href=\"{href}\"{current}>{text}</a>")
    };
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{title} · Strom</title><style>{STYLE}</style></head><body>\
         <a class=\"skip\" href=\"#main\">Skip to content</a>\
         <header><strong>Strom</strong><nav aria-label=\"Console\">{}{}{}{}{}{}</nav>\
         <span>broker {}</span>{}</header>\
         <main id=\"main\"{}><h1>{title}</h1>{body}</main><script>{SCRIPT}</script></body></html>",
        link(Nav::Cluster, "/ui/cluster", "Cluster"),
        link(Nav::Topics, "/ui/topics", "Topics"),
        link(Nav::Groups, "/ui/groups", "Consumer groups"),
        link(Nav::Streams, "/ui/streams", "Streams"),
        link(Nav::Connect, "/ui/connect", "Connect"),
        link(Nav::Events, "/ui/events", "Metadata events"),
        broker.node_id,
        viewer.and_then(Viewer::principal).map_or_else(String::new, |p| format!(
            "<span>signed in as {}</span><form method=\"post\" action=\"/ui/logout\" style=\"margin:0\">\
             <button type=\"submit\">Sign out</button></form>",
            esc(p)
        )),
        if live { " data-live" } else { "" },
        title = esc(title),
    ))
}

fn not_found(broker: &Broker, viewer: &Viewer, nav: Nav, message: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        page(
            broker,
            Some(viewer),
            "Not found",
            nav,
            false,
            &format!("<p>{}</p>", esc(message)),
        ),
    )
        .into_response()
}

/// What the signed-in user may not see or do: 403 with what it would take.
fn denied(broker: &Broker, viewer: &Viewer, nav: Nav, what: &str) -> Response {
    let body = format!(
        "<p role=\"alert\">{} is not allowed to {} (the ACLs decide; an administrator can \
         grant it with <code>strom acls add</code>).</p>",
        esc(viewer.principal().unwrap_or("This user")),
        esc(what)
    );
    (
        StatusCode::FORBIDDEN,
        page(broker, Some(viewer), "Not allowed", nav, false, &body),
    )
        .into_response()
}

/// A partition's replication status, as a word and the class that shades it.
fn partition_status(p: &PartitionImage, image: &MetadataImage) -> (&'static str, &'static str) {
    let leader_alive = image.brokers.get(&p.leader).is_some_and(|b| !b.fenced);
    if p.leader < 0 || !leader_alive {
        ("offline", "bad")
    } else if p.isr.len() < p.replicas.len() {
        ("under-replicated", "warn")
    } else {
        ("in sync", "ok")
    }
}

async fn cluster(State(b): State<Arc<Broker>>, viewer: Viewer) -> Html<String> {
    let image = b.image();
    let mut leaders: BTreeMap<i32, usize> = BTreeMap::new();
    let mut replicas: BTreeMap<i32, usize> = BTreeMap::new();
    for p in image.topics().flat_map(|t| t.partitions.iter()) {
        *leaders.entry(p.leader).or_default() += 1;
        for r in &p.replicas {
            *replicas.entry(*r).or_default() += 1;
        }
    }
    let mut body = String::new();
    let health = b.controller.health();
    let _ = write!(
        body,
        "<dl><dt>Cluster id</dt><dd>{}</dd><dt>This broker</dt><dd>{}</dd>\
         <dt>Mode</dt><dd>{}</dd><dt>Controllers (quorum)</dt><dd>{}</dd>\
         <dt>Metadata offset</dt><dd>{}</dd><dt>This broker's state</dt><dd>{}</dd></dl>",
        esc(&image.cluster_id),
        b.node_id,
        if b.config.dev {
            "single process (--dev)"
        } else {
            "cluster"
        },
        esc(&b.controller.quorum_addrs().join(", ")),
        image.offset,
        if health.registered && !health.fenced {
            "registered, unfenced"
        } else if health.fenced {
            "fenced"
        } else {
            "not registered"
        },
    );
    body.push_str(
        "<table><caption>Brokers</caption><thead><tr><th scope=\"col\">Id</th>\
         <th scope=\"col\">State</th><th scope=\"col\">Rack</th><th scope=\"col\">Endpoints</th>\
         <th scope=\"col\">Leaders</th><th scope=\"col\">Replicas</th></tr></thead><tbody>",
    );
    for (id, br) in &image.brokers {
        let (state, class) = if br.fenced {
            ("fenced", "bad")
        } else {
            ("alive", "ok")
        };
        let endpoints: Vec<String> = br
            .endpoints
            .iter()
            .map(|e| format!("{} {}:{}", e.name, e.host, e.port))
            .collect();
        let _ = write!(
            body,
            "<tr><th scope=\"row\">{id}{}</th><td class=\"{class}\">{state}</td><td>{}</td>\
             <td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            if *id == b.node_id { " (this one)" } else { "" },
            esc(br.rack.as_deref().unwrap_or("—")),
            esc(&endpoints.join(", ")),
            leaders.get(id).copied().unwrap_or(0),
            replicas.get(id).copied().unwrap_or(0),
        );
    }
    body.push_str("</tbody></table>");
    let offline = leaders.get(&-1).copied().unwrap_or(0);
    if offline > 0 {
        let _ = write!(
            body,
            "<p class=\"bad\">{offline} partition(s) have no leader (offline).</p>"
        );
    }
    page(&b, Some(&viewer), "Cluster", Nav::Cluster, true, &body)
}

async fn topics(State(b): State<Arc<Broker>>, viewer: Viewer) -> Html<String> {
    let image = b.image();
    let mut body = String::from(
        "<table><caption>Topics</caption><thead><tr><th scope=\"col\">Topic</th>\
         <th scope=\"col\">Partitions</th><th scope=\"col\">Replication factor</th>\
         <th scope=\"col\">Status</th><th scope=\"col\">Bytes held here</th></tr></thead><tbody>",
    );
    // As Metadata does: only the topics the viewer may describe.
    for t in image
        .topics()
        .filter(|t| viewer.may(&b, operation::DESCRIBE, resource::TOPIC, &t.name))
    {
        let (mut under, mut offline) = (0, 0);
        let mut size = 0u64;
        for p in &t.partitions {
            match partition_status(p, &image).0 {
                "offline" => offline += 1,
                "under-replicated" => under += 1,
                _ => {}
            }
            if let Some(l) = b.logs.get(&TopicPartition::new(t.topic_id, p.partition)) {
                size += l.state().size_bytes;
            }
        }
        let (status, class) = match (offline, under) {
            (0, 0) => ("in sync".to_string(), "ok"),
            (0, u) => (format!("{u} under-replicated"), "warn"),
            (o, 0) => (format!("{o} offline"), "bad"),
            (o, u) => (format!("{o} offline, {u} under-replicated"), "bad"),
        };
        let _ = write!(
            body,
            "<tr><th scope=\"row\"><a href=\"/ui/topics/{}\">{}</a>{}</th><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"{class}\">{status}</td><td class=\"num\">{size}</td></tr>",
            url(&t.name),
            esc(&t.name),
            if t.is_internal() { " (internal)" } else { "" },
            t.partitions.len(),
            t.partitions.first().map_or(0, |p| p.replicas.len()),
        );
    }
    body.push_str("</tbody></table>");
    body.push_str(actions::CREATE_TOPIC_FORM);
    page(&b, Some(&viewer), "Topics", Nav::Topics, true, &body)
}

fn join(ids: &[i32]) -> String {
    ids.iter()
        .map(i32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

async fn topic(State(b): State<Arc<Broker>>, viewer: Viewer, Path(name): Path<String>) -> Response {
    if !viewer.may(&b, operation::DESCRIBE, resource::TOPIC, &name) {
        return denied(
            &b,
            &viewer,
            Nav::Topics,
            &format!("describe topic '{name}'"),
        );
    }
    let image = b.image();
    let Some(t) = image.topic(&name) else {
        return not_found(
            &b,
            &viewer,
            Nav::Topics,
            &format!("Topic '{name}' does not exist."),
        );
    };
    let mut body = format!(
        "<p>Topic id {} · <a href=\"/ui/topics/{}/messages\">Browse messages</a></p>\
         <table><caption>Partitions</caption><thead><tr><th scope=\"col\">Partition</th>\
         <th scope=\"col\">Leader</th><th scope=\"col\">Replicas</th><th scope=\"col\">In-sync replicas</th>\
         <th scope=\"col\">Status</th><th scope=\"col\">Leader epoch</th><th scope=\"col\">Log start</th>\
         <th scope=\"col\">High watermark</th><th scope=\"col\">Log end</th><th scope=\"col\">Bytes</th></tr></thead><tbody>",
        t.topic_id,
        url(&t.name)
    );
    for p in &t.partitions {
        let (status, class) = partition_status(p, &image);
        let offsets = b
            .logs
            .get(&TopicPartition::new(t.topic_id, p.partition))
            .map(|l| {
                let s = l.state();
                (
                    s.log_start_offset.to_string(),
                    l.high_watermark().to_string(),
                    s.log_end_offset.to_string(),
                    s.size_bytes.to_string(),
                )
            });
        let (start, hw, end, size) = offsets.unwrap_or_else(|| {
            let none = || "not held here".to_string();
            (none(), none(), none(), none())
        });
        let _ = write!(
            body,
            "<tr><th scope=\"row\"><a href=\"/ui/topics/{}/messages?partition={}\">{}</a></th>\
             <td>{}</td><td>{}</td><td>{}</td><td class=\"{class}\">{status}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{start}</td><td class=\"num\">{hw}</td><td class=\"num\">{end}</td><td class=\"num\">{size}</td></tr>",
            url(&t.name),
            p.partition,
            p.partition,
            if p.leader < 0 { "none".to_string() } else { p.leader.to_string() },
            join(&p.replicas),
            join(&p.isr),
            p.leader_epoch,
        );
    }
    body.push_str("</tbody></table>");
    body.push_str("<table><caption>Configs set on this topic</caption><thead><tr><th scope=\"col\">Name</th><th scope=\"col\">Value</th></tr></thead><tbody>");
    // As DescribeConfigs: the configs need DescribeConfigs on the topic.
    let configs_shown = viewer.may(&b, operation::DESCRIBE_CONFIGS, resource::TOPIC, &name);
    if !configs_shown {
        body.push_str(
            "<tr><td colspan=\"2\">not shown: that needs DescribeConfigs on the topic</td></tr>",
        );
    } else if t.configs.is_empty() {
        body.push_str("<tr><td colspan=\"2\">none (broker defaults apply)</td></tr>");
    }
    for (k, v) in t.configs.iter().filter(|_| configs_shown) {
        let _ = write!(
            body,
            "<tr><th scope=\"row\">{}</th><td>{}</td></tr>",
            esc(k),
            esc(v)
        );
    }
    body.push_str("</tbody></table>");
    body.push_str(&actions::alter_configs_form(&t.name));
    body.push_str(&actions::delete_topic_form(&t.name));
    page(
        &b,
        Some(&viewer),
        &format!("Topic {name}"),
        Nav::Topics,
        true,
        &body,
    )
    .into_response()
}

#[derive(Debug, Default, Deserialize)]
struct MessagesQuery {
    partition: Option<String>,
    offset: Option<String>,
    timestamp: Option<String>,
    limit: Option<String>,
    format: Option<String>,
    filter: Option<String>,
}

/// How the browser shows keys, values and header values.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Text,
    Json,
    Hex,
}

fn show(bytes: Option<&Bytes>, format: Format) -> String {
    let Some(b) = bytes else {
        return "null".into();
    };
    match format {
        Format::Hex => b
            .iter()
            .map(|x| format!("{x:02x}"))
            .collect::<Vec<_>>()
            .join(" "),
        Format::Json => match serde_json::from_slice::<serde_json::Value>(b) {
            Ok(v) => serde_json::to_string_pretty(&v).unwrap_or_default(),
            // Not JSON (a plain key, a header): shown as text.
            Err(_) => String::from_utf8_lossy(b).into_owned(),
        },
        Format::Text => String::from_utf8_lossy(b).into_owned(),
    }
}

/// Non-empty, trimmed query value.
fn param(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// Up to `limit` records of a local replica from `offset`, below its high watermark
/// (committed records only; control records left out).
fn read_records(
    log: &crate::log::PartitionLog,
    offset: i64,
    limit: usize,
) -> Result<Vec<Record>, String> {
    let mut out = Vec::new();
    let mut next = offset;
    while out.len() < limit && next < log.high_watermark() {
        let r = log
            .read_up_to(next, 1 << 20, ReadLimit::HighWatermark)
            .map_err(|e| e.to_string())?;
        if r.records.is_empty() {
            break;
        }
        let mut data = r.records.clone();
        let batches = RecordBatchDecoder::decode_all(&mut data).map_err(|e| e.to_string())?;
        let before = next;
        for rec in batches.into_iter().flat_map(|s| s.records) {
            next = next.max(rec.offset + 1);
            if rec.offset >= offset && !rec.control && out.len() < limit {
                out.push(rec);
            }
        }
        if next == before {
            break;
        }
    }
    Ok(out)
}

async fn messages(
    State(b): State<Arc<Broker>>,
    viewer: Viewer,
    Path(name): Path<String>,
    Query(q): Query<MessagesQuery>,
) -> Response {
    // As Fetch does: records only for who may read the topic.
    if !viewer.may(&b, operation::READ, resource::TOPIC, &name) {
        return denied(&b, &viewer, Nav::Topics, &format!("read topic '{name}'"));
    }
    let image = b.image();
    let Some(t) = image.topic(&name) else {
        return not_found(
            &b,
            &viewer,
            Nav::Topics,
            &format!("Topic '{name}' does not exist."),
        );
    };
    let partition: u32 = param(&q.partition)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    let limit: usize = param(&q.limit)
        .and_then(|l| l.parse().ok())
        .unwrap_or(50)
        .clamp(1, 500);
    let format = match param(&q.format) {
        Some("json") => Format::Json,
        Some("hex") => Format::Hex,
        _ => Format::Text,
    };
    let filter = param(&q.filter).map(str::to_lowercase);
    let title = format!("Messages of {name}");
    let done =
        |body: &str| page(&b, Some(&viewer), &title, Nav::Topics, false, body).into_response();
    let mut body = String::new();
    // The form: every field labelled, current values kept.
    let _ = write!(
        body,
        "<p><a href=\"/ui/topics/{}\">Back to topic {}</a></p>\
         <form method=\"get\" aria-label=\"Choose records\"><label>Partition<select name=\"partition\">",
        url(&t.name),
        esc(&t.name)
    );
    for p in &t.partitions {
        let _ = write!(
            body,
            "<option value=\"{0}\"{1}>{0}</option>",
            p.partition,
            if p.partition == partition {
                " selected"
            } else {
                ""
            }
        );
    }
    let opt = |v: &str, text: &str, current: Format, this: Format| {
        format!(
            "<option value=\"{v}\"{}>{text}</option>",
            if current == this { " selected" } else { "" }
        )
    };
    let _ = write!(
        body,
        "</select></label><label>From offset<input name=\"offset\" inputmode=\"numeric\" value=\"{}\"></label>\
         <label>Or from timestamp (ms)<input name=\"timestamp\" inputmode=\"numeric\" value=\"{}\"></label>\
         <label>Records<input name=\"limit\" inputmode=\"numeric\" value=\"{limit}\"></label>\
         <label>Show as<select name=\"format\">{}{}{}</select></label>\
         <label>Filter (text in key, value or headers)<input name=\"filter\" value=\"{}\"></label>\
         <button type=\"submit\">Show</button></form>",
        esc(param(&q.offset).unwrap_or("")),
        esc(param(&q.timestamp).unwrap_or("")),
        opt("text", "text", format, Format::Text),
        opt("json", "JSON", format, Format::Json),
        opt("hex", "hex", format, Format::Hex),
        esc(param(&q.filter).unwrap_or("")),
    );
    let Some(meta) = t.partitions.iter().find(|p| p.partition == partition) else {
        body.push_str("<p class=\"bad\">No such partition.</p>");
        return done(&body);
    };
    let Some(log) = b.logs.get(&TopicPartition::new(t.topic_id, partition)) else {
        let path = format!("/topics/{}/messages?partition={partition}", url(&t.name));
        let links: Vec<String> = meta
            .replicas
            .iter()
            .map(|r| broker_link(&image, *r, &path))
            .collect();
        let _ = write!(
            body,
            "<p>Broker {} holds no replica of partition {partition}; read it on {}.</p>",
            b.node_id,
            links.join(", ")
        );
        return done(&body);
    };
    let state = log.state();
    let start = match (param(&q.offset), param(&q.timestamp)) {
        (Some(o), _) => o
            .parse::<i64>()
            .map_err(|_| format!("offset '{o}' is not a number")),
        (None, Some(ts)) => match ts.parse::<i64>() {
            Err(_) => Err(format!("timestamp '{ts}' is not a number of milliseconds")),
            Ok(ts) => Ok(log
                .offset_for_timestamp(ts)
                .ok()
                .flatten()
                .map_or(log.high_watermark(), |o| o.offset)),
        },
        (None, None) => Ok(state.log_start_offset),
    };
    let records = start
        .and_then(|s| read_records(&log, s.max(state.log_start_offset), limit).map(|r| (s, r)));
    let (start, records) = match records {
        Ok(x) => x,
        Err(e) => {
            let _ = write!(body, "<p class=\"bad\" role=\"alert\">{}</p>", esc(&e));
            return done(&body);
        }
    };
    let _ = write!(
        body,
        "<p>Partition {partition}: log start {}, high watermark {}. Showing committed records from offset {}.</p>\
         <table><caption>Records</caption><thead><tr><th scope=\"col\">Offset</th><th scope=\"col\">Timestamp</th>\
         <th scope=\"col\">Key</th><th scope=\"col\">Value</th><th scope=\"col\">Headers</th></tr></thead><tbody>",
        state.log_start_offset,
        log.high_watermark(),
        start.max(state.log_start_offset),
    );
    let mut shown = 0;
    for r in &records {
        let key = show(r.key.as_ref(), format);
        let value = show(r.value.as_ref(), format);
        let headers: Vec<String> = r
            .headers
            .iter()
            .map(|(k, v)| format!("{}: {}", k.as_str(), show(v.as_ref(), format)))
            .collect();
        let headers = headers.join("\n");
        if let Some(f) = &filter {
            let hay = format!("{key}\n{value}\n{headers}").to_lowercase();
            if !hay.contains(f.as_str()) {
                continue;
            }
        }
        shown += 1;
        let _ = write!(
            body,
            "<tr><th scope=\"row\">{}</th><td>{} ({})</td><td><pre>{}</pre></td><td><pre>{}</pre></td><td><pre>{}</pre></td></tr>",
            r.offset,
            iso_time(r.timestamp),
            r.timestamp,
            esc(&key),
            esc(&value),
            esc(&headers),
        );
    }
    if shown == 0 {
        body.push_str("<tr><td colspan=\"5\">no records</td></tr>");
    }
    body.push_str("</tbody></table>");
    if let Some(last) = records.last() {
        let _ = write!(
            body,
            "<p><a href=\"?partition={partition}&amp;offset={}&amp;limit={limit}&amp;format={}&amp;filter={}\">Next records</a></p>",
            last.offset + 1,
            match format {
                Format::Text => "text",
                Format::Json => "json",
                Format::Hex => "hex",
            },
            url(param(&q.filter).unwrap_or("")),
        );
    }
    done(&body)
}

/// The console of broker `id`, from the HTTP endpoint it registered.
fn console_of(image: &MetadataImage, id: i32) -> Option<String> {
    let e = image.brokers.get(&id)?.endpoint("http")?;
    Some(format!("http://{}:{}/ui", e.host, e.port))
}

/// A link to broker `id`'s console page `path`, or its bare number when it has no HTTP
/// endpoint.
fn broker_link(image: &MetadataImage, id: i32, path: &str) -> String {
    match console_of(image, id) {
        Some(base) => format!("<a href=\"{}{}\">broker {id}</a>", esc(&base), esc(path)),
        None => format!("broker {id}"),
    }
}

/// The broker that coordinates `group` (leads its `__consumer_offsets` partition).
fn coordinator_of(image: &MetadataImage, group: &str) -> Option<i32> {
    let t: &TopicImage = image.topic(crate::group::OFFSETS_TOPIC)?;
    let p = crate::group::offsets_partition(group);
    t.partitions.get(p as usize).map(|p| p.leader)
}

async fn groups(State(b): State<Arc<Broker>>, viewer: Viewer) -> Html<String> {
    let mut body = format!(
        "<p>Groups coordinated by broker {} (each broker coordinates the groups whose \
         <code>__consumer_offsets</code> partition it leads).</p>\
         <table><caption>Consumer groups</caption><thead><tr><th scope=\"col\">Group</th>\
         <th scope=\"col\">State</th><th scope=\"col\">Protocol type</th><th scope=\"col\">Total lag</th></tr></thead><tbody>",
        b.node_id
    );
    // As ListGroups does: only the groups the viewer may describe.
    let list: Vec<_> = b
        .groups
        .list()
        .into_iter()
        .filter(|(id, _, _)| viewer.may(&b, operation::DESCRIBE, resource::GROUP, id))
        .collect();
    if list.is_empty() {
        body.push_str("<tr><td colspan=\"4\">none</td></tr>");
    }
    for (id, state, protocol_type) in list {
        let lag: i64 = visible_lag(&b, &viewer, &id)
            .iter()
            .filter_map(|o| o.lag)
            .sum();
        let _ = write!(
            body,
            "<tr><th scope=\"row\"><a href=\"/ui/groups/{}\">{}</a></th><td>{state}</td><td>{}</td><td class=\"num\">{lag}</td></tr>",
            url(&id),
            esc(&id),
            esc(&protocol_type),
        );
    }
    body.push_str("</tbody></table>");
    page(
        &b,
        Some(&viewer),
        "Consumer groups",
        Nav::Groups,
        true,
        &body,
    )
}

async fn group(State(b): State<Arc<Broker>>, viewer: Viewer, Path(id): Path<String>) -> Response {
    if !viewer.may(&b, operation::DESCRIBE, resource::GROUP, &id) {
        return denied(&b, &viewer, Nav::Groups, &format!("describe group '{id}'"));
    }
    let description = b.groups.describe(&id);
    let offsets = visible_lag(&b, &viewer, &id);
    if description.is_none() && offsets.is_empty() {
        let image = b.image();
        let hint = match coordinator_of(&image, &id) {
            Some(c) if c >= 0 && c != b.node_id => format!(
                " Its coordinator is {}.",
                broker_link(&image, c, &format!("/groups/{}", url(&id)))
            ),
            _ => String::new(),
        };
        let body = format!(
            "<p>Group '{}' is not known to broker {}.{hint}</p>",
            esc(&id),
            b.node_id
        );
        return (
            StatusCode::NOT_FOUND,
            page(
                &b,
                Some(&viewer),
                "Group not here",
                Nav::Groups,
                false,
                &body,
            ),
        )
            .into_response();
    }
    let mut body = String::new();
    match &description {
        Some(d) => {
            let _ = write!(
                body,
                "<dl><dt>State</dt><dd>{}</dd><dt>Protocol</dt><dd>{} {}</dd><dt>Generation</dt><dd>{}</dd><dt>Members</dt><dd>{}</dd></dl>",
                d.state,
                esc(&d.protocol_type),
                esc(&d.protocol),
                d.generation,
                d.members.len()
            );
            body.push_str("<table><caption>Members</caption><thead><tr><th scope=\"col\">Member</th><th scope=\"col\">Instance id</th><th scope=\"col\">Client</th><th scope=\"col\">Host</th><th scope=\"col\">Assignment</th></tr></thead><tbody>");
            for (member, instance, client, host, _, assignment) in &d.members {
                let assigned: Vec<String> = crate::http::assigned(assignment)
                    .into_iter()
                    .map(|(t, ps)| format!("{t} [{}]", join(&ps)))
                    .collect();
                let _ = write!(
                    body,
                    "<tr><th scope=\"row\">{}</th><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    esc(member),
                    esc(instance.as_deref().unwrap_or("—")),
                    esc(client),
                    esc(host),
                    esc(&assigned.join("; ")),
                );
            }
            body.push_str("</tbody></table>");
        }
        None => body.push_str("<dl><dt>State</dt><dd>Empty (no members)</dd></dl>"),
    }
    lag_table(&mut body, "Committed offsets and lag", &offsets, true);
    let _ = write!(
        body,
        "<p><a href=\"/ui/groups/{}/reset\">Reset offsets…</a> (the group must have no members)</p>",
        url(&id)
    );
    page(
        &b,
        Some(&viewer),
        &format!("Group {id}"),
        Nav::Groups,
        true,
        &body,
    )
    .into_response()
}

/// A group's committed offsets and lag, of the topics the viewer may describe (as OffsetFetch
/// leaves out the others).
fn visible_lag(b: &Broker, viewer: &Viewer, group: &str) -> Vec<crate::GroupLag> {
    b.group_lag(group)
        .into_iter()
        .filter(|o| viewer.may(b, operation::DESCRIBE, resource::TOPIC, &o.topic))
        .collect()
}

/// A table of committed offsets, end offsets and lag per partition, with the total in its
/// footer when `total`.
fn lag_table(body: &mut String, caption: &str, offsets: &[crate::GroupLag], total: bool) {
    let _ = write!(
        body,
        "<table><caption>{}</caption><thead><tr><th scope=\"col\">Topic</th><th scope=\"col\">Partition</th><th scope=\"col\">Committed offset</th><th scope=\"col\">End offset</th><th scope=\"col\">Lag</th></tr></thead><tbody>",
        esc(caption)
    );
    for o in offsets {
        let unknown = || "not known yet".to_string();
        let _ = write!(
            body,
            "<tr><th scope=\"row\">{}</th><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            esc(&o.topic),
            o.partition,
            o.committed.offset,
            o.end.map_or_else(unknown, |e| e.to_string()),
            o.lag.map_or_else(unknown, |l| l.to_string()),
        );
    }
    body.push_str("</tbody>");
    if total {
        let sum: i64 = offsets.iter().filter_map(|o| o.lag).sum();
        let _ = write!(
            body,
            "<tfoot><tr><th scope=\"row\" colspan=\"4\">Total lag</th><td class=\"num\" id=\"total-lag\">{sum}</td></tr></tfoot>"
        );
    }
    body.push_str("</table>");
}

/// A metadata record for the timeline: (kind, detail) from its JSON form.
fn describe_record(r: &LoggedRecord) -> (String, String) {
    match serde_json::to_value(&r.record) {
        Ok(serde_json::Value::Object(m)) if m.len() == 1 => {
            let (k, v) = m.into_iter().next().unwrap_or_default();
            (k, v.to_string())
        }
        Ok(v) => (v.to_string(), String::new()),
        Err(e) => ("?".into(), e.to_string()),
    }
}

/// The records of `page` with secrets stripped (as `/v1/metadata/events` shows them).
fn records(b: &Broker, from: u64, limit: usize) -> Vec<LoggedRecord> {
    EventsPage::new(from, b.controller.events(from, limit)).events
}

/// How many of the latest records the timeline page shows.
const TIMELINE: u64 = 200;

async fn events(State(b): State<Arc<Broker>>, viewer: Viewer) -> Response {
    if !viewer.may_describe_cluster(&b) {
        return denied(&b, &viewer, Nav::Events, "describe the cluster");
    }
    let end = b.image().offset;
    let from = end.saturating_sub(TIMELINE);
    let recs = records(&b, from, TIMELINE as usize);
    let next = recs.last().map_or(from, |r| r.offset + 1);
    let mut body = format!(
        "<p id=\"live-status\" aria-live=\"polite\">{} records; new ones appear at the top as they are applied.</p>\
         <table><caption>Metadata events, newest first</caption><thead><tr><th scope=\"col\">Offset</th>\
         <th scope=\"col\">Time (UTC)</th><th scope=\"col\">Record</th><th scope=\"col\">Detail</th></tr></thead>\
         <tbody id=\"timeline\" data-next=\"{next}\">",
        end
    );
    for r in recs.iter().rev() {
        let (kind, detail) = describe_record(r);
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            r.offset,
            iso_time(r.timestamp_ms),
            esc(&kind),
            esc(&detail)
        );
    }
    body.push_str("</tbody></table>");
    page(
        &b,
        Some(&viewer),
        "Metadata events",
        Nav::Events,
        false,
        &body,
    )
    .into_response()
}

/// `ms` since the epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
fn iso_time(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms.rem_euclid(1000)
    )
}

#[derive(Debug, Deserialize)]
struct StreamQuery {
    from: Option<u64>,
}

/// Server-sent events: every metadata record from `from` on, as it is applied (`record`
/// events carrying offset, timestamp, kind and detail).
async fn event_stream(
    State(b): State<Arc<Broker>>,
    viewer: Viewer,
    Query(q): Query<StreamQuery>,
) -> Response {
    if !viewer.may_describe_cluster(&b) {
        return denied(&b, &viewer, Nav::Events, "describe the cluster");
    }
    let from = q.from.unwrap_or_else(|| b.image().offset);
    let images = b.controller.subscribe();
    let stream = futures::stream::unfold(
        (b, images, from, Vec::<LoggedRecord>::new(), viewer),
        |(b, mut images, mut next, mut pending, viewer)| async move {
            loop {
                // The stream ends with the sign-in, or with the viewer's Describe on the
                // cluster.
                if !viewer.still_signed_in(&b) || !viewer.may_describe_cluster(&b) {
                    return None;
                }
                if !pending.is_empty() {
                    let r = pending.remove(0);
                    let (kind, detail) = describe_record(&r);
                    let data = serde_json::json!({
                        "offset": r.offset,
                        "timestamp_ms": r.timestamp_ms,
                        "kind": kind,
                        "detail": detail,
                    });
                    let event = Event::default()
                        .event("record")
                        .id(r.offset.to_string())
                        .data(data.to_string());
                    return Some((
                        Ok::<_, Infallible>(event),
                        (b, images, next, pending, viewer),
                    ));
                }
                pending = records(&b, next, 1000);
                if let Some(last) = pending.last() {
                    next = last.offset + 1;
                    continue;
                }
                // Nothing new: wait for the next image (or the sender to go away), looking
                // again every few seconds whether the sign-in still holds.
                tokio::select! {
                    changed = images.changed() => changed.ok()?,
                    _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                }
            }
        },
    );
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_escaped_and_urls_encoded() {
        assert_eq!(
            esc("<a href=\"x\">&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(url("my topic/ü"), "my%20topic%2F%C3%BC");
    }

    #[test]
    fn times_are_iso_8601_utc() {
        assert_eq!(iso_time(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso_time(1_796_428_800_123), "2026-12-05T00:00:00.123Z");
        assert_eq!(iso_time(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn values_show_as_text_json_or_hex() {
        let v = Bytes::from_static(b"{\"a\":1}");
        assert_eq!(show(Some(&v), Format::Text), "{\"a\":1}");
        assert_eq!(show(Some(&v), Format::Json), "{\n  \"a\": 1\n}");
        assert_eq!(
            show(Some(&Bytes::from_static(b"\x01\xff")), Format::Hex),
            "01 ff"
        );
        assert_eq!(show(None, Format::Text), "null");
        assert_eq!(
            show(Some(&Bytes::from_static(b"plain")), Format::Json),
            "plain"
        );
    }
}
