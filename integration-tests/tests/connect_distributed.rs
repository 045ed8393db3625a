//! strom-connect in distributed mode, as real processes: two workers share a group; a
//! FileStreamSource tails a file that grows to 100,000 JSON lines (updates of 1,000 keys)
//! while a JDBC sink upserts the topic into PostgreSQL and a FileStreamSink writes it back
//! out. Half-way, the worker running the source task is killed with SIGKILL: its tasks move
//! to the survivor once the group drops it (session.timeout.ms). In the end the topic holds
//! every line exactly once, in order (exactly.once.source.support); the table has exactly one
//! row per key, with its latest value; the sink file has every line at least once.
//!
//! PostgreSQL: `$STROM_PG_URL` (scripts/postgres.sh starts one), by default
//! postgresql://strom:strom@127.0.0.1:5432/strom. `STROM_CONNECT_TEST_LINES` changes the
//! number of lines.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use integration_tests::{free_port, http_send, tail, AppProcess, BrokerProcess};
use serde_json::json;
use strom_client::admin::{Admin, NewTopic, OffsetSpec};
use strom_client::consumer::{Consumer, ConsumerConfig, IsolationLevel, OffsetReset};
use strom_client::TopicPartition;

const KEYS: usize = 1000;

fn pg_url() -> String {
    std::env::var("STROM_PG_URL")
        .unwrap_or_else(|_| "postgresql://strom:strom@127.0.0.1:5432/strom".into())
}

/// Line `i`: an update of key `i % KEYS`.
fn line(i: usize) -> String {
    format!("{{\"id\":{},\"seq\":{i},\"value\":\"v-{i:06}\"}}", i % KEYS)
}

fn lines() -> usize {
    std::env::var("STROM_CONNECT_TEST_LINES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000)
}

struct Worker {
    rest: SocketAddr,
    proc: AppProcess,
}

fn start_worker(dir: &Path, name: &str, bootstrap: &str) -> Worker {
    let port = free_port().expect("port");
    let props = dir.join(format!("{name}.properties"));
    std::fs::write(
        &props,
        format!(
            "bootstrap.servers={bootstrap}\ngroup.id=connect-test\nlisteners=http://127.0.0.1:{port}\n\
             config.storage.topic=cfg\noffset.storage.topic=offsets\nstatus.storage.topic=status\n\
             key.converter=org.apache.kafka.connect.storage.StringConverter\n\
             value.converter=org.apache.kafka.connect.storage.StringConverter\n\
             exactly.once.source.support=enabled\noffset.flush.interval.ms=1000\n\
             session.timeout.ms=6000\nheartbeat.interval.ms=1000\n"
        ),
    )
    .expect("worker config");
    let proc = AppProcess::start_bin(
        "strom-connect",
        "STROM_CONNECT_BIN",
        vec!["distributed".into(), props.display().to_string()],
        dir.join(format!("{name}.log")),
    )
    .expect("start worker");
    let rest = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(60);
    while http_send(rest, "GET", "/", None).map(|r| r.0).ok() != Some(200) {
        assert!(
            Instant::now() < deadline,
            "worker {name} did not come up:\n{}",
            tail(&dir.join(format!("{name}.log")), 30)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    Worker { rest, proc }
}

/// POSTs a connector, retrying while the group is rebalancing (409).
fn create(w: &Worker, name: &str, config: serde_json::Value) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (code, body) = http_send(
            w.rest,
            "POST",
            "/connectors",
            Some(&json!({"name": name, "config": config})),
        )
        .expect("POST /connectors");
        if code == 201 {
            return;
        }
        assert!(
            code == 409 && Instant::now() < deadline,
            "creating {name}: {code} {body}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn task_worker(w: &Worker, name: &str) -> Option<String> {
    let (code, s) = http_send(w.rest, "GET", &format!("/connectors/{name}/status"), None).ok()?;
    let t = &s["tasks"][0];
    (code == 200 && t["state"] == "RUNNING")
        .then(|| t["worker_id"].as_str().unwrap_or("").to_string())
}

async fn end_offset(bootstrap: &str) -> i64 {
    Admin::new(bootstrap)
        .list_offset(&TopicPartition::new("lines", 0), OffsetSpec::Latest)
        .await
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_s_tasks_move_and_every_line_arrives_exactly_once() {
    let n = lines();
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = BrokerProcess::start(&dir.path().join("broker"), &[]).expect("broker");
    let bootstrap = broker.kafka.to_string();
    Admin::new(&bootstrap)
        .create_topic(&NewTopic::new("lines", 1, 1))
        .await
        .expect("topic");
    let mut workers = [
        start_worker(dir.path(), "worker-a", &bootstrap),
        start_worker(dir.path(), "worker-b", &bootstrap),
    ];
    let input = dir.path().join("input.txt");
    let output = dir.path().join("output.txt");
    std::fs::write(&input, "").expect("input");
    create(
        &workers[0],
        "source",
        json!({"connector.class": "FileStreamSource", "file": input.display().to_string(), "topic": "lines", "batch.size": "500"}),
    );
    create(
        &workers[1],
        "sink",
        json!({"connector.class": "org.apache.kafka.connect.file.FileStreamSinkConnector", "file": output.display().to_string(), "topics": "lines"}),
    );
    let (pg, pg_conn) = tokio_postgres::connect(&pg_url(), tokio_postgres::NoTls)
        .await
        .expect("PostgreSQL (run scripts/postgres.sh)");
    tokio::spawn(pg_conn);
    let table = format!("connect_test_{}", std::process::id());
    pg.batch_execute(&format!("DROP TABLE IF EXISTS {table}"))
        .await
        .expect("drop");
    let jdbc = pg_url().replacen("postgresql://", "jdbc:postgresql://", 1);
    let (user_pass, rest) = jdbc
        .trim_start_matches("jdbc:postgresql://")
        .split_once('@')
        .expect("user in STROM_PG_URL");
    let (user, pass) = user_pass.split_once(':').unwrap_or((user_pass, ""));
    create(
        &workers[0],
        "pg-sink",
        json!({
            "connector.class": "io.confluent.connect.jdbc.JdbcSinkConnector",
            "connection.url": format!("jdbc:postgresql://{rest}"),
            "connection.user": user, "connection.password": pass,
            "topics": "lines", "table.name.format": table,
            "insert.mode": "upsert", "pk.mode": "record_value", "pk.fields": "id",
            "auto.create": "true",
            "value.converter": "org.apache.kafka.connect.json.JsonConverter",
            "value.converter.schemas.enable": "false",
        }),
    );

    // The file grows by 1,000 lines every 50 ms, as a log being written.
    let writer = {
        let input = input.clone();
        std::thread::spawn(move || {
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(&input)
                .expect("append");
            for chunk in 0..n.div_ceil(1000) {
                let text: String = (chunk * 1000..((chunk + 1) * 1000).min(n))
                    .map(|i| line(i) + "\n")
                    .collect();
                f.write_all(text.as_bytes()).expect("write");
                f.flush().expect("flush");
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };

    // Half-way, kill -9 the worker running the source task.
    let deadline = Instant::now() + Duration::from_secs(120);
    let owner = loop {
        if let Some(o) = task_worker(&workers[0], "source") {
            if end_offset(&bootstrap).await >= (n / 2) as i64 {
                break o;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the source never got half-way:\n{}",
            tail(&workers[0].proc.log, 30)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let victim = workers
        .iter()
        .position(|w| owner.ends_with(&format!(":{}", w.rest.port())))
        .expect("owner is a worker");
    let killed_at = Instant::now();
    let written_at_kill = end_offset(&bootstrap).await;
    workers[victim].proc.kill9().expect("kill");
    let survivor = &workers[1 - victim];
    let survivor_id = format!("127.0.0.1:{}", survivor.rest.port());
    let deadline = Instant::now() + Duration::from_secs(60);
    while task_worker(survivor, "source").as_deref() != Some(survivor_id.as_str()) {
        assert!(
            Instant::now() < deadline,
            "the source task did not move:\n{}",
            tail(&survivor.proc.log, 40)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "killed {owner} at offset {written_at_kill}; its source task ran again on {survivor_id} {:.1} s later",
        killed_at.elapsed().as_secs_f64()
    );
    writer.join().expect("writer");

    // Every line exactly once, in order, for a read_committed reader.
    let mut cc = ConsumerConfig::new(&bootstrap);
    cc.auto_offset_reset = OffsetReset::Earliest;
    cc.isolation_level = IsolationLevel::ReadCommitted;
    let mut consumer = Consumer::new(cc).expect("consumer");
    consumer
        .assign(vec![TopicPartition::new("lines", 0)])
        .await
        .expect("assign");
    let mut got = Vec::with_capacity(n);
    let deadline = Instant::now() + Duration::from_secs(180);
    while got.len() < n && Instant::now() < deadline {
        for r in consumer
            .poll(Duration::from_millis(500))
            .await
            .expect("poll")
        {
            got.push(String::from_utf8(r.value.unwrap_or_default().to_vec()).expect("utf8"));
        }
    }
    // Anything more would be a duplicate: give it a moment to show up.
    for r in consumer.poll(Duration::from_secs(3)).await.expect("poll") {
        got.push(String::from_utf8(r.value.unwrap_or_default().to_vec()).expect("utf8"));
    }
    let want: Vec<String> = (0..n).map(line).collect();
    assert_eq!(got.len(), n, "the topic holds {} lines, not {n}", got.len());
    if let Some(i) = (0..n).find(|&i| got[i] != want[i]) {
        panic!(
            "lines are missing, repeated or out of order from #{i}: got {:?}, want {:?}",
            &got[i..(i + 3).min(n)],
            &want[i..(i + 3).min(n)]
        );
    }

    // The sink wrote every line (at least once: a restart redelivers from the last commit).
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let text = std::fs::read_to_string(&output).unwrap_or_default();
        let seen: BTreeSet<&str> = text.lines().collect();
        if seen.len() == n && want.iter().all(|w| seen.contains(w.as_str())) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the sink file has {} distinct lines of {n}",
            seen.len()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // One row per key, with the key's last update, however often rows were redelivered.
    let deadline = Instant::now() + Duration::from_secs(120);
    let expected: BTreeMap<i64, i64> = (n.saturating_sub(KEYS)..n)
        .map(|i| ((i % KEYS) as i64, i as i64))
        .collect();
    loop {
        let rows = pg
            .query(
                &format!("SELECT id, seq, value FROM {table} ORDER BY id"),
                &[],
            )
            .await
            .unwrap_or_default();
        let got: BTreeMap<i64, i64> = rows
            .iter()
            .map(|r| (r.get::<_, i64>(0), r.get::<_, i64>(1)))
            .collect();
        if got == expected {
            assert!(rows
                .iter()
                .all(|r| r.get::<_, String>(2) == format!("v-{:06}", r.get::<_, i64>(1))));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the table has {} rows, {} with their latest value",
            got.len(),
            got.iter()
                .filter(|(k, v)| expected.get(k) == Some(v))
                .count()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    pg.batch_execute(&format!("DROP TABLE {table}"))
        .await
        .expect("drop");
}
