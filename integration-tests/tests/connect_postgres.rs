//! strom-connect in standalone mode against a real PostgreSQL (`$STROM_PG_URL`, started by
//! scripts/postgres.sh): the JDBC source copies a table incrementally and resumes after a
//! restart from its stored offset without repeating a row; the CDC source (pgoutput) turns
//! a snapshot, inserts, updates and deletes into Debezium-shaped events, in order.

use std::path::Path;
use std::time::{Duration, Instant};

use integration_tests::{free_port, http_send, tail, AppProcess, BrokerProcess};
use serde_json::Value;
use strom_client::consumer::{Consumer, ConsumerConfig, OffsetReset};
use strom_client::TopicPartition;

fn pg_url() -> String {
    std::env::var("STROM_PG_URL")
        .unwrap_or_else(|_| "postgresql://strom:strom@127.0.0.1:5432/strom".into())
}

/// (host, port, user, password, database) of `$STROM_PG_URL`.
fn pg_parts() -> (String, String, String, String, String) {
    let url = pg_url();
    let rest = url
        .split_once("://")
        .map_or(url.as_str(), |(_, r)| r)
        .to_string();
    let (auth, hostdb) = rest.split_once('@').expect("user@ in STROM_PG_URL");
    let (user, pass) = auth.split_once(':').unwrap_or((auth, ""));
    let (hostport, db) = hostdb.split_once('/').unwrap_or((hostdb, "postgres"));
    let (host, port) = hostport.split_once(':').unwrap_or((hostport, "5432"));
    (
        host.into(),
        port.into(),
        user.into(),
        pass.into(),
        db.into(),
    )
}

fn start_standalone(
    dir: &Path,
    bootstrap: &str,
    connectors: &[&Path],
) -> (AppProcess, std::net::SocketAddr) {
    let port = free_port().expect("port");
    let props = dir.join("worker.properties");
    std::fs::write(
        &props,
        format!(
            "bootstrap.servers={bootstrap}\nlisteners=http://127.0.0.1:{port}\n\
             offset.storage.file.filename={}\noffset.flush.interval.ms=500\n\
             key.converter=org.apache.kafka.connect.json.JsonConverter\nkey.converter.schemas.enable=false\n\
             value.converter=org.apache.kafka.connect.json.JsonConverter\nvalue.converter.schemas.enable=false\n",
            dir.join("offsets.json").display()
        ),
    )
    .expect("worker config");
    let mut args = vec!["standalone".to_string(), props.display().to_string()];
    args.extend(connectors.iter().map(|c| c.display().to_string()));
    let proc = AppProcess::start_bin(
        "strom-connect",
        "STROM_CONNECT_BIN",
        args,
        dir.join("worker.log"),
    )
    .expect("worker");
    let rest = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(60);
    while http_send(rest, "GET", "/", None).map(|r| r.0).ok() != Some(200) {
        assert!(
            Instant::now() < deadline,
            "worker did not come up:\n{}",
            tail(&dir.join("worker.log"), 30)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    (proc, rest)
}

/// The last lines of the worker's log and of the broker's beside it, for a failure message.
fn logs(worker_log: &Path) -> String {
    format!(
        "worker:\n{}\nbroker:\n{}",
        tail(worker_log, 30),
        tail(&worker_log.with_file_name("broker.log"), 30)
    )
}

/// Every record of `topic` (one partition) until `n` have arrived: (key, value) as JSON.
async fn read(bootstrap: &str, topic: &str, n: usize, log: &Path) -> Vec<(Value, Value)> {
    let mut cc = ConsumerConfig::new(bootstrap);
    cc.auto_offset_reset = OffsetReset::Earliest;
    let mut c = Consumer::new(cc).expect("consumer");
    let deadline = Instant::now() + Duration::from_secs(90);
    while c.assign(vec![TopicPartition::new(topic, 0)]).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "topic {topic} never appeared:\n{}",
            logs(log)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut out = Vec::new();
    while out.len() < n {
        assert!(
            Instant::now() < deadline,
            "{topic}: {} of {n} records:\n{}",
            out.len(),
            logs(log)
        );
        let batch = match c.poll(Duration::from_millis(300)).await {
            Ok(b) => b,
            // The connector creates the topic when it sends its first record.
            Err(strom_client::consumer::ConsumerError::UnknownTopic(_)) => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            Err(e) => panic!("poll: {e}"),
        };
        for r in batch {
            let parse = |b: Option<bytes::Bytes>| {
                b.map_or(Value::Null, |b| serde_json::from_slice(&b).expect("json"))
            };
            out.push((parse(r.key), parse(r.value)));
        }
    }
    // Nothing more should come: a duplicate would show here.
    let extra = c.poll(Duration::from_secs(2)).await.expect("poll");
    assert!(
        extra.is_empty(),
        "extra records on {topic}: {:?}",
        extra.first().map(|r| &r.value)
    );
    out
}

/// A temporary dir, a broker in it, its bootstrap address, and a PostgreSQL client.
async fn setup() -> (
    tempfile::TempDir,
    BrokerProcess,
    String,
    tokio_postgres::Client,
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = BrokerProcess::start(&dir.path().join("broker"), &[]).expect("broker");
    let bootstrap = broker.kafka.to_string();
    let (pg, conn) = tokio_postgres::connect(&pg_url(), tokio_postgres::NoTls)
        .await
        .expect("PostgreSQL (run scripts/postgres.sh)");
    tokio::spawn(conn);
    (dir, broker, bootstrap, pg)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jdbc_source_resumes_and_cdc_shows_every_change_in_order() {
    let (dir, _broker, bootstrap, pg) = setup().await;
    let id = std::process::id();
    let (src, cdc, slot, publication) = (
        format!("src_{id}"),
        format!("cdc_{id}"),
        format!("slot_{id}"),
        format!("pub_{id}"),
    );
    pg.batch_execute(&format!(
        "DROP TABLE IF EXISTS {src}; DROP TABLE IF EXISTS {cdc};
         CREATE TABLE {src} (id SERIAL PRIMARY KEY, name TEXT NOT NULL, score DOUBLE PRECISION, at TIMESTAMP DEFAULT '2024-01-02 03:04:05.678');
         CREATE TABLE {cdc} (id INT PRIMARY KEY, name TEXT, qty INT);
         INSERT INTO {cdc} VALUES (1, 'apple', 10), (2, 'pear', 20);
         INSERT INTO {src} (name, score) SELECT 'row-' || g, g / 2.0 FROM generate_series(1, 500) g;"
    ))
    .await
    .expect("tables");

    let (host, port, user, pass, db) = pg_parts();
    let jdbc = dir.path().join("jdbc-source.properties");
    std::fs::write(
        &jdbc,
        format!(
            "name=pg-source\nconnector.class=io.confluent.connect.jdbc.JdbcSourceConnector\n\
             connection.url=jdbc:postgresql://{host}:{port}/{db}\nconnection.user={user}\nconnection.password={pass}\n\
             mode=incrementing\nincrementing.column.name=id\ntable.whitelist={src}\ntopic.prefix=pg-\n\
             poll.interval.ms=200\nbatch.max.rows=100\n\
             topic.creation.default.replication.factor=1\ntopic.creation.default.partitions=1\n"
        ),
    )
    .expect("jdbc config");
    let cdc_props = dir.path().join("cdc.properties");
    std::fs::write(
        &cdc_props,
        format!(
            "name=pg-cdc\nconnector.class=io.debezium.connector.postgresql.PostgresConnector\n\
             database.hostname={host}\ndatabase.port={port}\ndatabase.user={user}\ndatabase.password={pass}\n\
             database.dbname={db}\ntopic.prefix=cdc\ntable.include.list=public.{cdc}\n\
             slot.name={slot}\npublication.name={publication}\npoll.interval.ms=100\n\
             topic.creation.default.replication.factor=1\ntopic.creation.default.partitions=1\n"
        ),
    )
    .expect("cdc config");
    let log = dir.path().join("worker.log");
    let (mut worker, rest) = start_standalone(dir.path(), &bootstrap, &[&jdbc, &cdc_props]);

    // The JDBC source: 500 rows, in id order, with their types.
    let topic = format!("pg-{src}");
    let rows = read(&bootstrap, &topic, 500, &log).await;
    assert!(rows
        .iter()
        .enumerate()
        .all(|(i, (_, v))| v["id"] == i as i64 + 1 && v["name"] == format!("row-{}", i + 1)));
    assert_eq!(rows[2].1["score"], 1.5);
    assert_eq!(
        rows[0].1["at"], 1_704_164_645_678i64,
        "a TIMESTAMP column is ms since the epoch"
    );

    // CDC: the snapshot, then changes.
    let cdc_topic = format!("cdc.public.{cdc}");
    let snap = read(&bootstrap, &cdc_topic, 2, &log).await;
    assert!(snap
        .iter()
        .all(|(_, v)| v["op"] == "r" && v["before"].is_null()));
    assert_eq!(snap[0].0, serde_json::json!({"id": 1}));
    assert_eq!(
        snap[1].1["after"],
        serde_json::json!({"id": 2, "name": "pear", "qty": 20})
    );
    pg.batch_execute(&format!(
        "INSERT INTO {cdc} VALUES (3, 'plum', 30);
         BEGIN; UPDATE {cdc} SET qty = 11 WHERE id = 1; DELETE FROM {cdc} WHERE id = 2; COMMIT;"
    ))
    .await
    .expect("changes");
    let events = read(&bootstrap, &cdc_topic, 6, &log).await;
    let ops: Vec<Option<&str>> = events.iter().map(|(_, v)| v["op"].as_str()).collect();
    assert_eq!(
        ops,
        [Some("r"), Some("r"), Some("c"), Some("u"), Some("d"), None],
        "{events:?}"
    );
    assert_eq!(events[2].1["after"]["name"], "plum");
    assert_eq!(events[3].1["after"]["qty"], 11);
    assert_eq!(events[3].0, serde_json::json!({"id": 1}));
    assert_eq!(
        events[4].1["before"]["id"], 2,
        "a delete carries the old key"
    );
    assert!(events[4].1["after"].is_null());
    assert_eq!(
        events[5].0,
        serde_json::json!({"id": 2}),
        "a tombstone follows the delete"
    );
    assert_eq!(events[2].1["source"]["table"], cdc.as_str());
    assert_eq!(events[2].1["source"]["connector"], "postgresql");

    // The standalone worker's REST API: pause and resume a connector.
    let task_state = |rest| {
        http_send(rest, "GET", "/connectors/pg-source/status", None)
            .ok()
            .and_then(|(_, s)| s["tasks"][0]["state"].as_str().map(str::to_string))
    };
    for (action, state) in [("pause", "PAUSED"), ("resume", "RUNNING")] {
        let (code, _) = http_send(
            rest,
            "PUT",
            &format!("/connectors/pg-source/{action}"),
            None,
        )
        .expect("PUT");
        assert_eq!(code, 202);
        let deadline = Instant::now() + Duration::from_secs(30);
        while task_state(rest).as_deref() != Some(state) {
            assert!(
                Instant::now() < deadline,
                "pg-source never became {state}:\n{}",
                tail(&log, 20)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // Restart: the JDBC source goes on after row 500; CDC neither repeats the snapshot nor
    // any change already sent.
    worker.stop().expect("clean stop");
    pg.batch_execute(&format!(
        "INSERT INTO {src} (name, score) SELECT 'row-' || g, 0 FROM generate_series(501, 600) g;
         UPDATE {cdc} SET name = 'PLUM' WHERE id = 3;"
    ))
    .await
    .expect("more rows");
    let (mut worker, _rest) = start_standalone(dir.path(), &bootstrap, &[&jdbc, &cdc_props]);
    let rows = read(&bootstrap, &topic, 600, &log).await;
    assert!(
        rows.iter()
            .enumerate()
            .all(|(i, (_, v))| v["id"] == i as i64 + 1),
        "rows repeated or missing after the restart"
    );
    let events = read(&bootstrap, &cdc_topic, 7, &log).await;
    assert_eq!(events[6].1["op"], "u");
    assert_eq!(events[6].1["after"]["name"], "PLUM");
    worker.stop().expect("clean stop");

    pg.batch_execute(&format!(
        "SELECT pg_drop_replication_slot('{slot}'); DROP PUBLICATION {publication}; DROP TABLE {src}; DROP TABLE {cdc};"
    ))
    .await
    .expect("cleanup");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jdbc_sink_deletes_and_evolves_and_the_timestamp_source_sees_updates() {
    use strom_client::producer::{Producer, ProducerConfig, ProducerRecord};

    let (dir, _broker, bootstrap, pg) = setup().await;
    let id = std::process::id();
    let (people, events) = (format!("people_{id}"), format!("events_{id}"));
    pg.batch_execute(&format!(
        "DROP TABLE IF EXISTS {people}; DROP TABLE IF EXISTS {events};
         CREATE TABLE {events} (id SERIAL PRIMARY KEY, what TEXT, updated_at TIMESTAMP NOT NULL DEFAULT '2024-01-01 00:00:00');
         INSERT INTO {events} (what, updated_at) SELECT 'e' || g, '2024-01-01'::timestamp + g * interval '1 second' FROM generate_series(1, 20) g;"
    ))
    .await
    .expect("tables");

    // Records keyed {"id": n}: two versions of 1, a row for 2 then its tombstone, and a
    // later record with a field the table does not have yet.
    strom_client::admin::Admin::new(&bootstrap)
        .create_topic(&strom_client::admin::NewTopic::new("people", 1, 1))
        .await
        .expect("topic");
    let producer = Producer::new(ProducerConfig::new(&bootstrap))
        .await
        .expect("producer");
    let rec = |k: i64, v: Option<&str>| ProducerRecord {
        topic: "people".into(),
        key: Some(format!("{{\"id\":{k}}}").into()),
        value: v.map(|v| bytes::Bytes::from(v.to_string())),
        ..ProducerRecord::default()
    };
    for r in [
        rec(1, Some(r#"{"name":"ann"}"#)),
        rec(2, Some(r#"{"name":"bob"}"#)),
        rec(3, Some(r#"{"name":"cy"}"#)),
        rec(1, Some(r#"{"name":"anne"}"#)),
        rec(2, None),
        rec(3, Some(r#"{"name":"cy","email":"cy@example.com"}"#)),
    ] {
        producer
            .send(r)
            .await
            .expect("send")
            .await
            .expect("delivered");
    }

    let (host, port, user, pass, db) = pg_parts();
    let sink = dir.path().join("sink.properties");
    std::fs::write(
        &sink,
        format!(
            "name=people-sink\nconnector.class=JdbcSink\ntopics=people\n\
             connection.url=jdbc:postgresql://{host}:{port}/{db}?user={user}&password={pass}\n\
             table.name.format={people}\ninsert.mode=upsert\npk.mode=record_key\n\
             delete.enabled=true\nauto.create=true\nauto.evolve=true\n"
        ),
    )
    .expect("sink config");
    let source = dir.path().join("source.properties");
    std::fs::write(
        &source,
        format!(
            "name=events-source\nconnector.class=JdbcSource\n\
             connection.url=jdbc:postgresql://{host}:{port}/{db}\nconnection.user={user}\nconnection.password={pass}\n\
             mode=timestamp+incrementing\nincrementing.column.name=id\ntimestamp.column.name=updated_at\n\
             table.whitelist={events}\ntopic.prefix=db-\npoll.interval.ms=200\nbatch.max.rows=7\n\
             topic.creation.default.replication.factor=1\ntopic.creation.default.partitions=1\n"
        ),
    )
    .expect("source config");
    let log = dir.path().join("worker.log");
    let (mut worker, _rest) = start_standalone(dir.path(), &bootstrap, &[&sink, &source]);

    let deadline = Instant::now() + Duration::from_secs(60);
    let rows = loop {
        let rows = pg
            .query(
                &format!("SELECT id, name, email FROM {people} ORDER BY id"),
                &[],
            )
            .await
            .unwrap_or_default();
        let got: Vec<(i64, String, Option<String>)> = rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
        if got.len() == 2 && got[1].2.is_some() {
            break got;
        }
        assert!(
            Instant::now() < deadline,
            "the table shows {got:?}:\n{}",
            logs(&log)
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(
        rows,
        vec![
            (1, "anne".to_string(), None),
            (3, "cy".to_string(), Some("cy@example.com".to_string()))
        ],
        "upserts keep the last value, the tombstone deleted 2, and email was added"
    );

    // timestamp+incrementing: every row once, then a row again when it is updated.
    let topic = format!("db-{events}");
    let first = read(&bootstrap, &topic, 20, &log).await;
    assert!(first
        .iter()
        .enumerate()
        .all(|(i, (_, v))| v["id"] == i as i64 + 1));
    pg.batch_execute(&format!(
        "UPDATE {events} SET what = 'changed', updated_at = '2024-06-01' WHERE id = 5"
    ))
    .await
    .expect("update");
    let all = read(&bootstrap, &topic, 21, &log).await;
    assert_eq!(all[20].1["id"], 5);
    assert_eq!(all[20].1["what"], "changed");
    worker.stop().expect("clean stop");
    pg.batch_execute(&format!("DROP TABLE {people}; DROP TABLE {events};"))
        .await
        .expect("cleanup");
}
