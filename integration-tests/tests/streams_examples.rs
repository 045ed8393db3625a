//! The sessionize and enrich streams examples as real processes against a live broker,
//! checked against hand-computed outputs.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use integration_tests::producer::committed_sum;
use integration_tests::{state_args, AppProcess, BrokerProcess};
use strom_client::admin::{Admin, NewTopic};
use strom_client::consumer::{Consumer, ConsumerConfig, OffsetReset};
use strom_client::producer::{Producer, ProducerConfig, ProducerRecord};
use strom_client::TopicPartition;

fn broker(dir: &std::path::Path) -> BrokerProcess {
    BrokerProcess::start(
        &dir.join("broker"),
        &["--group-initial-rebalance-delay-ms", "0"],
    )
    .expect("broker")
}

async fn topics(bootstrap: &str, names: &[&str], partitions: i32) {
    let mut admin = Admin::new(bootstrap);
    for t in names {
        admin
            .create_topic(&NewTopic::new(*t, partitions, 1))
            .await
            .expect("create topic");
    }
}

async fn produce(bootstrap: &str, topic: &str, records: &[(&str, String)]) {
    let p = Producer::new(ProducerConfig::new(bootstrap))
        .await
        .expect("producer");
    for (k, v) in records {
        p.send(ProducerRecord::new(topic, v.clone()).with_key(k.to_string()))
            .await
            .expect("send")
            .await
            .expect("acked");
    }
}

/// Reads `topic` until `n` records arrived (or a minute passed).
async fn read(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    n: usize,
    app: &mut AppProcess,
) -> Vec<(String, String)> {
    let mut cfg = ConsumerConfig::new(bootstrap);
    cfg.auto_offset_reset = OffsetReset::Earliest;
    let mut c = Consumer::new(cfg).expect("consumer");
    c.assign(
        (0..partitions)
            .map(|p| TopicPartition::new(topic, p))
            .collect(),
    )
    .await
    .expect("assign");
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while out.len() < n {
        assert!(
            Instant::now() < deadline,
            "only {} of {n} records: {out:?}",
            out.len()
        );
        app.check_running().expect("the example runs");
        for r in c.poll(Duration::from_millis(300)).await.expect("poll") {
            let s = |b: Option<bytes::Bytes>| {
                String::from_utf8(b.unwrap_or_default().to_vec()).expect("utf8")
            };
            out.push((s(r.key), s(r.value)));
        }
    }
    // Nothing more than expected turns up.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(c
        .poll(Duration::from_millis(500))
        .await
        .expect("poll")
        .is_empty());
    out
}

fn click(user: &str, page: &str, ts: i64) -> (&'static str, String) {
    let user: &'static str = Box::leak(user.to_string().into_boxed_str());
    (
        user,
        format!(r#"{{"user":"{user}","page":"{page}","ts":{ts}}}"#),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessionize_emits_each_closed_session_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = broker(dir.path());
    let bs = b.kafka.to_string();
    topics(&bs, &["clicks", "sessions"], 2).await;
    let mut app = AppProcess::start(
        "sessionize",
        "STROM_SESSIONIZE_BIN",
        state_args(
            &[
                "--bootstrap-server",
                &bs,
                "--input",
                "clicks",
                "--output",
                "sessions",
                "--inactivity-gap-ms",
                "3000",
                "--grace-ms",
                "1000",
                "--commit-interval-ms",
                "100",
            ],
            &dir.path().join("state"),
        ),
        dir.path().join("sessionize.log"),
    )
    .expect("start sessionize");
    // gap 3000, grace 1000. a: 0, 1000, 2500 (one session), 9000 (another); b: 500 then
    // 2000 out of order (both in one session); a at 1500 arriving after time 20000 is
    // late and dropped; z at 60000 on each partition moves stream time past all.
    let clicks = vec![
        click("a", "/home", 0),
        click("b", "/b2", 2000),
        click("a", "/search", 1000),
        click("b", "/b1", 500),
        click("a", "/cart", 2500),
        click("a", "/again", 9000),
        click("c", "/late-test", 20_000),
        click("a", "/late", 1500),
    ];
    produce(&bs, "clicks", &clicks).await;
    // Stream time is kept per task: tick every partition.
    let p = Producer::new(ProducerConfig::new(&bs))
        .await
        .expect("producer");
    for partition in 0..2 {
        let (k, v) = click("z", "/tick", 60_000);
        p.send(
            ProducerRecord::new("clicks", v)
                .with_key(k)
                .with_partition(partition),
        )
        .await
        .expect("send")
        .await
        .expect("acked");
    }
    let got = read(&bs, "sessions", 2, 4, &mut app).await;
    let got: BTreeMap<String, serde_json::Value> = got
        .into_iter()
        .map(|(k, v)| {
            let v: serde_json::Value = serde_json::from_str(&v).expect("json");
            (format!("{k}@{}", v["start"]), v)
        })
        .collect();
    let expect = |user: &str, start: i64, end: i64, pages: &[&str]| serde_json::json!({"user": user, "start": start, "end": end, "clicks": pages.len(), "pages": pages});
    assert_eq!(
        got["a@0"],
        expect("a", 0, 2500, &["/home", "/search", "/cart"])
    );
    assert_eq!(got["a@9000"], expect("a", 9000, 9000, &["/again"]));
    assert_eq!(got["b@500"], expect("b", 500, 2000, &["/b2", "/b1"]));
    assert_eq!(got["c@20000"], expect("c", 20000, 20000, &["/late-test"]));
    app.stop().expect("clean stop");
    let log = std::fs::read_to_string(&app.log).unwrap_or_default();
    assert!(log.contains("1 late and dropped"), "{log}");
}

/// The enrich example against `bs`, committing every 100 ms, its state under `dir`.
fn start_enrich(bs: &str, dir: &std::path::Path) -> AppProcess {
    AppProcess::start(
        "enrich",
        "STROM_ENRICH_BIN",
        state_args(
            &["--bootstrap-server", bs, "--commit-interval-ms", "100"],
            &dir.join("state"),
        ),
        dir.join("enrich.log"),
    )
    .expect("start enrich")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrich_joins_orders_with_the_latest_customer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = broker(dir.path());
    let bs = b.kafka.to_string();
    topics(&bs, &["orders", "customers", "enriched-orders"], 3).await;
    produce(
        &bs,
        "customers",
        &[
            ("c1", r#"{"name":"Ada"}"#.to_string()),
            ("c2", r#"{"name":"Grace"}"#.to_string()),
        ],
    )
    .await;
    let mut app = start_enrich(&bs, dir.path());
    // The table must hold the customers before the orders come: wait for the group's
    // committed offsets to cover them.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if committed_sum(&bs, "enrich", "customers").await >= 2 {
            break;
        }
        assert!(Instant::now() < deadline, "customers never consumed");
        app.check_running().expect("enrich runs");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Orders keyed by order id: the example re-keys them by customer_id.
    produce(
        &bs,
        "orders",
        &[
            (
                "o1",
                r#"{"id":"o1","customer_id":"c1","amount":10}"#.to_string(),
            ),
            (
                "o2",
                r#"{"id":"o2","customer_id":"c9","amount":5}"#.to_string(),
            ),
            (
                "o3",
                r#"{"id":"o3","customer_id":"c2","amount":7}"#.to_string(),
            ),
        ],
    )
    .await;
    let got = read(&bs, "enriched-orders", 3, 3, &mut app).await;
    let by_order: BTreeMap<String, (String, serde_json::Value)> = got
        .into_iter()
        .map(|(k, v)| {
            let v: serde_json::Value = serde_json::from_str(&v).expect("json");
            (
                v["order"]["id"].as_str().unwrap_or_default().to_string(),
                (k, v),
            )
        })
        .collect();
    assert_eq!(by_order["o1"].0, "c1");
    assert_eq!(by_order["o1"].1["customer"]["name"], "Ada");
    assert_eq!(by_order["o3"].1["customer"]["name"], "Grace");
    assert_eq!(by_order["o2"].0, "c9");
    assert!(by_order["o2"].1["customer"].is_null());
    app.stop().expect("clean stop");
}

/// Task idling (`max.task.idle.ms`, KIP-695): 50,000 customers, then 300 orders already
/// keyed by customer in the join's repartition topic, are there before enrich starts. The
/// join task's first fetch brings every order but only part of its customers partition;
/// with the default 0 it holds the orders (later timestamps) while that partition still has
/// records to fetch, so every order meets its customer. (With `--max-task-idle-ms -1` about
/// 270 of the 300 come out with no customer.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrich_waits_for_the_table_before_joining_later_orders() {
    const REPARTITION: &str = "enrich-orders-by-customer-repartition";
    let dir = tempfile::tempdir().expect("tempdir");
    let b = broker(dir.path());
    let bs = b.kafka.to_string();
    topics(&bs, &["orders", "customers", "enriched-orders"], 3).await;
    let p = Producer::new(ProducerConfig::new(&bs))
        .await
        .expect("producer");
    let mut acks = Vec::new();
    for i in 0..50_000 {
        let record = ProducerRecord::new("customers", format!(r#"{{"name":"n{i}"}}"#))
            .with_key(format!("c{i}"));
        acks.push(p.send(record).await.expect("send"));
    }
    for a in acks.drain(..) {
        a.await.expect("acked");
    }
    // Straight into the join's repartition topic (keyed by customer, as the example's
    // first step writes them), so the join task has both inputs from its first fetch.
    Admin::new(&bs)
        .create_topic(&NewTopic::new(REPARTITION, 3, 1))
        .await
        .expect("create the repartition topic");
    for i in 0..300 {
        let customer = format!("c{}", i * 97);
        let order = format!(r#"{{"id":"o{i}","customer_id":"{customer}"}}"#);
        acks.push(
            p.send(ProducerRecord::new(REPARTITION, order).with_key(customer))
                .await
                .expect("send"),
        );
    }
    for a in acks {
        a.await.expect("acked");
    }
    let mut app = start_enrich(&bs, dir.path());
    let got = read(&bs, "enriched-orders", 3, 300, &mut app).await;
    let missed: Vec<&String> = got
        .iter()
        .filter(|(_, v)| {
            serde_json::from_str::<serde_json::Value>(v).expect("json")["customer"].is_null()
        })
        .map(|(k, _)| k)
        .collect();
    assert!(
        missed.is_empty(),
        "{} of 300 orders were joined before their customer was read: {missed:?}",
        missed.len()
    );
    app.stop().expect("clean stop");
}

/// (status, Location header, body) of a GET.
fn http_get(addr: &str, path: &str) -> (u16, Option<String>, String) {
    use std::io::{Read, Write};
    // Not listening yet (the instance is starting): status 0.
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return (0, None, String::new());
    };
    let mut buf = String::new();
    if write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").is_err()
        || s.read_to_string(&mut buf).is_err()
    {
        return (0, None, String::new());
    }
    let (head, body) = buf.split_once("\r\n\r\n").unwrap_or((&buf, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let location = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("location")
            .then(|| v.trim().to_string())
    });
    (status, location, body.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wordcount_answers_interactive_queries_and_points_to_the_owner() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = broker(dir.path());
    let bs = b.kafka.to_string();
    topics(&bs, &["lines", "counts"], 4).await;
    // Word i appears i + 1 times.
    let mut lines = Vec::new();
    for i in 0..60 {
        for _ in 0..=i {
            lines.push(("x", format!("word{i}")));
        }
    }
    produce(&bs, "lines", &lines).await;
    let servers: Vec<String> = (0..2)
        .map(|_| {
            format!(
                "127.0.0.1:{}",
                integration_tests::free_port().expect("port")
            )
        })
        .collect();
    let mut apps: Vec<AppProcess> = servers
        .iter()
        .enumerate()
        .map(|(i, server)| {
            AppProcess::start(
                "wordcount",
                "STROM_WORDCOUNT_BIN",
                state_args(
                    &[
                        "--bootstrap-server",
                        &bs,
                        "--input",
                        "lines",
                        "--output",
                        "counts",
                        "--application-id",
                        "iq-app",
                        "--commit-interval-ms",
                        "300000",
                        "--application-server",
                        server,
                    ],
                    &dir.path().join(format!("state-{i}")),
                ),
                dir.path().join(format!("wc-{i}.log")),
            )
            .expect("start wordcount")
        })
        .collect();
    // Until both instances host tasks and every count is final. Commits are five minutes
    // apart, so the counts are in the record cache, which queries read through.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        for a in apps.iter_mut() {
            a.check_running().expect("wordcount runs");
        }
        assert!(
            Instant::now() < deadline,
            "queries never showed the final counts"
        );
        let meta = http_get(&servers[0], "/metadata");
        let both = meta.0 == 200 && servers.iter().all(|s| meta.2.contains(s.as_str()));
        let mut all: BTreeMap<String, i64> = BTreeMap::new();
        if both {
            for s in &servers {
                let (status, _, body) = http_get(s, "/stores/counts/all");
                if status == 200 {
                    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
                    for e in v.as_array().into_iter().flatten() {
                        all.insert(
                            e["key"].as_str().unwrap_or_default().to_string(),
                            e["value"].as_i64().unwrap_or(-1),
                        );
                    }
                }
            }
        }
        if all.len() == 60 && (0..60).all(|i| all.get(&format!("word{i}")) == Some(&(i + 1))) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Every key through one instance: its own answered, the others redirected to the
    // instance that has them, which answers.
    let (mut local, mut redirected) = (0, 0);
    for i in 0..60 {
        let path = format!("/stores/counts/keys/word{i}");
        let (status, location, body) = http_get(&servers[0], &path);
        let body = match status {
            200 => {
                local += 1;
                body
            }
            307 => {
                redirected += 1;
                let location = location.expect("a Location");
                assert_eq!(location, format!("http://{}{path}", servers[1]));
                let (status, _, body) = http_get(&servers[1], &path);
                assert_eq!(status, 200, "{body}");
                body
            }
            other => panic!("GET {path}: {other} {body}"),
        };
        let v: serde_json::Value = serde_json::from_str(&body).expect("json");
        assert_eq!(v["value"], i + 1, "word{i}");
    }
    assert!(
        local > 0 && redirected > 0,
        "{local} local, {redirected} redirected"
    );
    // A key range, over both instances' shares: word1 and word10..word19.
    let mut ranged = Vec::new();
    for server in &servers {
        let (status, _, body) = http_get(server, "/stores/counts/range?from=word1&to=word2");
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).expect("json");
        for e in v.as_array().into_iter().flatten() {
            ranged.push(e["key"].as_str().unwrap_or_default().to_string());
        }
    }
    ranged.sort();
    let mut expect: Vec<String> = std::iter::once("word1".to_string())
        .chain((10..20).map(|i| format!("word{i}")))
        .collect();
    expect.sort();
    assert_eq!(ranged, expect);
    let (status, _, _) = http_get(&servers[0], "/stores/counts/keys/never-seen");
    assert!(status == 404 || status == 307, "{status}");
    let (status, _, _) = http_get(&servers[0], "/stores/nope/keys/x");
    assert_eq!(status, 404);
    // The application server also serves the instance's metrics, with Kafka Streams' names:
    // between them the two instances processed every input record.
    let mut processed = 0;
    for s in &servers {
        let (status, _, body) = http_get(s, "/metrics");
        assert_eq!(status, 200);
        let line = body
            .lines()
            .find(|l| l.starts_with("kafka_streams_stream_thread_metrics_process_total{"))
            .unwrap_or_else(|| panic!("no process_total in {body}"));
        assert!(line.contains("application_id=\""), "{line}");
        processed += line
            .rsplit(' ')
            .next()
            .and_then(|n| n.parse::<u64>().ok())
            .expect("a count");
        assert!(
            body.contains("kafka_streams_stream_thread_metrics_commit_total{"),
            "{body}"
        );
    }
    assert!(
        processed >= lines.len() as u64,
        "{processed} < {}",
        lines.len()
    );
    // The broker's console shows the application as its group coordinator sees it: both
    // processes with their application.server, and the tasks of the input's 4 partitions.
    let console = b.http.to_string();
    let (status, _, list) = http_get(&console, "/ui/streams");
    assert_eq!(status, 200, "{list}");
    assert!(list.contains("href=\"/ui/streams/iq-app\""), "{list}");
    let (status, _, page) = http_get(&console, "/ui/streams/iq-app");
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Stable"), "{page}");
    for s in &servers {
        assert!(page.contains(&format!("<td>{s}</td>")), "{s} in {page}");
    }
    for task in ["0_0", "0_1", "0_2", "0_3"] {
        assert!(page.contains(task), "task {task} in {page}");
    }
    let (status, _, _) = http_get(&console, "/ui/streams/no-such-app");
    assert_eq!(status, 404);
    for a in apps.iter_mut() {
        a.stop().expect("clean stop");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wordcount_restores_its_store_from_the_changelog_after_the_state_dir_is_lost() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = broker(dir.path());
    let bs = b.kafka.to_string();
    topics(&bs, &["lines", "counts"], 2).await;
    let state = dir.path().join("state");
    let args: Vec<String> = state_args(
        &[
            "--bootstrap-server",
            &bs,
            "--input",
            "lines",
            "--output",
            "counts",
            "--application-id",
            "restore-app",
            "--commit-interval-ms",
            "100",
            "--processing-guarantee",
            "exactly_once_v2",
            "--cache-max-bytes",
            "0",
            "--repartition-purge-interval-ms",
            "100",
        ],
        &state,
    );
    let wait_committed = |n: i64| {
        let bs = bs.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            while committed_sum(&bs, "restore-app", "lines").await < n {
                assert!(Instant::now() < deadline, "input not processed");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    let words: Vec<(&str, String)> = (0..500).map(|i| ("k", format!("w{}", i % 100))).collect();
    produce(&bs, "lines", &words).await;
    let log = dir.path().join("wc.log");
    let mut app = AppProcess::start(
        "wordcount",
        "STROM_WORDCOUNT_BIN",
        args.clone(),
        log.clone(),
    )
    .expect("start");
    wait_committed(500).await;
    app.stop().expect("clean stop");
    std::fs::remove_dir_all(&state).expect("delete the state dir");
    let mut app =
        AppProcess::start("wordcount", "STROM_WORDCOUNT_BIN", args, log.clone()).expect("restart");
    produce(&bs, "lines", &words).await;
    wait_committed(1000).await;
    // Every word now counted 10 times, which needs the 5 from before the restart.
    let got = read(&bs, "counts", 2, 1000, &mut app).await;
    let mut latest: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in got {
        latest.insert(k, v);
    }
    assert_eq!(latest.len(), 100);
    assert!(latest.values().all(|v| v == "10"), "{latest:?}");
    app.stop().expect("clean stop");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let restored: u64 = text
        .lines()
        .filter(|l| l.contains("restored state stores"))
        .filter_map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("records="))
        })
        .filter_map(|n| n.parse::<u64>().ok())
        .sum();
    assert!(
        restored >= 100,
        "the store came back from its changelog: {restored} records"
    );
}
