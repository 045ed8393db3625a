//! The library's transactional producer and read_committed consumer against a live broker:
//! committed and aborted transactions as read_committed and read_uncommitted consumers see
//! them, zombie fencing as a fatal error, state misuse refused, and a consume-transform-
//! produce loop with `send_offsets_to_transaction` whose output holds every input exactly
//! once, with an aborted transaction rewound on the way.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use integration_tests::producer;
use integration_tests::BrokerProcess;
use strom_client::consumer::{
    Consumer, ConsumerConfig, ConsumerRecord, IsolationLevel, OffsetReset,
};
use strom_client::producer::{Producer, ProducerConfig, ProducerError, ProducerRecord};
use strom_client::TopicPartition;

fn broker(dir: &std::path::Path) -> BrokerProcess {
    BrokerProcess::start(dir, &["--group-initial-rebalance-delay-ms", "0"]).expect("start")
}

async fn transactional(bootstrap: &str, id: &str) -> Producer {
    let p = Producer::new(ProducerConfig::new(bootstrap).with_transactional_id(id))
        .await
        .expect("producer");
    p.init_transactions().await.expect("init_transactions");
    p
}

/// Sends `values` to partition 0 of `topic` and waits for each acknowledgement.
async fn send_all(p: &Producer, topic: &str, values: impl IntoIterator<Item = String>) {
    let mut ds = Vec::new();
    for v in values {
        ds.push(
            p.send(ProducerRecord::new(topic, v).with_partition(0))
                .await
                .expect("queued"),
        );
    }
    for d in ds {
        d.await.expect("delivered");
    }
}

fn reader(bootstrap: &str, isolation: IsolationLevel) -> Consumer {
    let mut c = ConsumerConfig::new(bootstrap);
    c.isolation_level = isolation;
    c.auto_offset_reset = OffsetReset::Earliest;
    Consumer::new(c).expect("consumer")
}

/// Reads partitions of `topic` from the start until `n` records came or a quiet second
/// passed after the deadline's share; returns their values.
async fn read_values(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    isolation: IsolationLevel,
    n: usize,
) -> Vec<ConsumerRecord> {
    let mut c = reader(bootstrap, isolation);
    c.assign(
        (0..partitions)
            .map(|p| TopicPartition::new(topic, p))
            .collect(),
    )
    .await
    .expect("assign");
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while out.len() < n && Instant::now() < deadline {
        out.extend(c.poll(Duration::from_millis(300)).await.expect("poll"));
    }
    // Nothing more may come.
    out.extend(c.poll(Duration::from_millis(500)).await.expect("poll"));
    out
}

fn values(records: &[ConsumerRecord]) -> Vec<String> {
    records
        .iter()
        .map(|r| String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned())
        .collect()
}

fn seq(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("{prefix}-{i:05}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_committed_sees_committed_transactions_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = broker(&dir.path().join("b"));
    let bootstrap = b.kafka.to_string();
    producer::create_replicated_topic(b.kafka, "txn", 1, 1).await;
    let p = transactional(&bootstrap, "lib-txn").await;
    // A new cluster finalizes transaction.version 2: every end bumps the epoch.
    assert_eq!(p.transaction_version(), 2);
    let (pid, epoch) = p.identity().expect("identity");

    p.begin_transaction().await.expect("begin");
    send_all(&p, "txn", seq("a", 0..300)).await;
    p.commit_transaction().await.expect("commit");
    p.begin_transaction().await.expect("begin");
    send_all(&p, "txn", seq("b", 0..100)).await;
    p.abort_transaction().await.expect("abort");
    p.begin_transaction().await.expect("begin");
    send_all(&p, "txn", seq("c", 0..300)).await;
    p.commit_transaction().await.expect("commit");
    assert_eq!(p.identity(), Some((pid, epoch + 3)), "one bump per end");

    let committed = read_values(&bootstrap, "txn", 1, IsolationLevel::ReadCommitted, 600).await;
    let want: Vec<String> = seq("a", 0..300)
        .into_iter()
        .chain(seq("c", 0..300))
        .collect();
    assert_eq!(
        values(&committed),
        want,
        "exactly the committed records, in order"
    );
    let all = read_values(&bootstrap, "txn", 1, IsolationLevel::ReadUncommitted, 700).await;
    let want_all: Vec<String> = seq("a", 0..300)
        .into_iter()
        .chain(seq("b", 0..100))
        .chain(seq("c", 0..300))
        .collect();
    assert_eq!(values(&all), want_all, "every data record, no markers");
    // Markers took offsets: 300 (commit), 401 (abort), 702 (commit).
    assert_eq!(committed[300].offset, 402);

    // Misuse is refused without touching the broker's state.
    assert!(matches!(
        p.commit_transaction().await,
        Err(ProducerError::TransactionState(_))
    ));
    assert!(matches!(
        p.send(ProducerRecord::new("txn", "outside")).await,
        Err(ProducerError::TransactionState(_))
    ));
    p.begin_transaction().await.expect("begin");
    assert!(matches!(
        p.begin_transaction().await,
        Err(ProducerError::TransactionState(_))
    ));
    p.abort_transaction()
        .await
        .expect("abort an empty transaction");
    let plain = Producer::new(ProducerConfig::new(&bootstrap))
        .await
        .expect("plain");
    assert!(matches!(
        plain.begin_transaction().await,
        Err(ProducerError::TransactionState(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_producer_fences_the_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = broker(&dir.path().join("b"));
    let bootstrap = b.kafka.to_string();
    producer::create_replicated_topic(b.kafka, "fence", 1, 1).await;
    let zombie = transactional(&bootstrap, "same-id").await;
    zombie.begin_transaction().await.expect("begin");
    send_all(&zombie, "fence", seq("zombie", 0..10)).await;

    let fresh = transactional(&bootstrap, "same-id").await;
    // The zombie's open transaction was aborted; its next step is fenced for good.
    let late = zombie
        .send(ProducerRecord::new("fence", "late").with_partition(0))
        .await
        .expect("queued")
        .await;
    assert!(late.is_err(), "{late:?}");
    let commit = zombie.commit_transaction().await;
    let e = commit.expect_err("fenced");
    assert!(e.is_fatal(), "{e:?}");
    assert!(matches!(
        zombie.begin_transaction().await,
        Err(ProducerError::Fenced(_))
    ));

    fresh.begin_transaction().await.expect("begin");
    send_all(&fresh, "fence", seq("fresh", 0..10)).await;
    fresh.commit_transaction().await.expect("commit");
    let seen = read_values(&bootstrap, "fence", 1, IsolationLevel::ReadCommitted, 10).await;
    assert_eq!(values(&seen), seq("fresh", 0..10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consume_transform_produce_is_exactly_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = broker(&dir.path().join("b"));
    let bootstrap = b.kafka.to_string();
    producer::create_replicated_topic(b.kafka, "eos-in", 3, 1).await;
    producer::create_replicated_topic(b.kafka, "eos-out", 3, 1).await;
    let n = 1500usize;
    let plain = Producer::new(ProducerConfig::new(&bootstrap))
        .await
        .expect("plain");
    let mut ds = Vec::new();
    for i in 0..n {
        let v = format!("rec-{i:05}");
        ds.push(
            plain
                .send(ProducerRecord::new("eos-in", v).with_partition((i % 3) as i32))
                .await
                .expect("queued"),
        );
    }
    for d in ds {
        d.await.expect("delivered");
    }

    let mut cfg = ConsumerConfig::new(&bootstrap);
    cfg.group_id = Some("eos-lib".into());
    cfg.enable_auto_commit = false;
    cfg.auto_offset_reset = OffsetReset::Earliest;
    cfg.isolation_level = IsolationLevel::ReadCommitted;
    let mut consumer = Consumer::new(cfg).expect("consumer");
    consumer.subscribe(&["eos-in"]).expect("subscribe");
    let p = transactional(&bootstrap, "eos-lib-0").await;

    let mut done = 0usize;
    let mut transactions = 0usize;
    let mut aborted_once = false;
    let deadline = Instant::now() + Duration::from_secs(60);
    while done < n {
        assert!(Instant::now() < deadline, "only {done} of {n} processed");
        let records = consumer
            .poll(Duration::from_millis(300))
            .await
            .expect("poll");
        if records.is_empty() {
            continue;
        }
        p.begin_transaction().await.expect("begin");
        let mut next: BTreeMap<TopicPartition, i64> = BTreeMap::new();
        for r in &records {
            let upper =
                String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).to_uppercase();
            p.send(ProducerRecord::new("eos-out", upper).with_partition(r.partition))
                .await
                .expect("queued");
            next.insert(TopicPartition::new(&r.topic, r.partition), r.offset + 1);
        }
        let offsets: Vec<(TopicPartition, i64)> = next.into_iter().collect();
        let group = consumer.group_metadata().expect("member");
        p.send_offsets_to_transaction(&offsets, &group)
            .await
            .expect("offsets");
        transactions += 1;
        if transactions == 3 && !aborted_once {
            // Abort this one and rewind to the committed offsets, as an application does
            // after an abortable error.
            aborted_once = true;
            p.abort_transaction().await.expect("abort");
            for (tp, _) in &offsets {
                let committed = consumer
                    .committed(std::slice::from_ref(tp))
                    .await
                    .expect("committed");
                let at = committed.get(tp).map_or(0, |o| o.offset);
                consumer.seek(tp, at).expect("seek");
            }
            continue;
        }
        p.commit_transaction().await.expect("commit");
        done += records.len();
    }
    assert!(aborted_once);

    let out = read_values(&bootstrap, "eos-out", 3, IsolationLevel::ReadCommitted, n).await;
    let mut got: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    for r in &out {
        got.entry(r.partition)
            .or_default()
            .push(String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned());
    }
    for part in 0..3 {
        let want: Vec<String> = (0..n)
            .filter(|i| i % 3 == part as usize)
            .map(|i| format!("REC-{i:05}"))
            .collect();
        assert_eq!(
            got.get(&part),
            Some(&want),
            "partition {part}: once each, in order"
        );
    }
    // The group's committed offsets are the input's end.
    let committed = consumer
        .committed(
            &(0..3)
                .map(|p| TopicPartition::new("eos-in", p))
                .collect::<Vec<_>>(),
        )
        .await
        .expect("committed");
    for part in 0..3 {
        assert_eq!(
            committed
                .get(&TopicPartition::new("eos-in", part))
                .map(|o| o.offset),
            Some(500)
        );
    }
}

/// Runs the `strom` CLI against `broker`; its stdout (the command must succeed).
fn strom(broker: &BrokerProcess, args: &[&str]) -> String {
    let out = std::process::Command::new(
        integration_tests::binary("strom", "STROM_BIN").expect("strom binary"),
    )
    .arg("--bootstrap-server")
    .arg(broker.kafka.to_string())
    .args(args)
    .output()
    .expect("run strom");
    assert!(
        out.status.success(),
        "strom {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_and_cli_show_open_and_finished_transactions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = broker(&dir.path().join("b"));
    let bootstrap = b.kafka.to_string();
    producer::create_replicated_topic(b.kafka, "watched", 2, 1).await;
    send_all(
        &Producer::new(ProducerConfig::new(&bootstrap))
            .await
            .expect("plain"),
        "watched",
        seq("plain", 0..3),
    )
    .await;
    let p = transactional(&bootstrap, "watched-txn").await;
    p.begin_transaction().await.expect("begin");
    send_all(&p, "watched", seq("open", 0..2)).await;

    let mut admin = strom_client::admin::Admin::new(&bootstrap);
    let listed = admin.list_transactions().await.expect("list");
    let row = listed
        .iter()
        .find(|t| t.transactional_id == "watched-txn")
        .expect("listed");
    assert_eq!(row.state, "Ongoing");
    let d = admin
        .describe_transaction("watched-txn")
        .await
        .expect("describe");
    assert_eq!(d.state, "Ongoing");
    assert_eq!(d.partitions, vec![TopicPartition::new("watched", 0)]);
    assert!(d.start_time_ms > 0);
    let (pid, _) = p.identity().expect("identity");
    let producers = admin
        .describe_producers(&TopicPartition::new("watched", 0))
        .await
        .expect("producers");
    let open = producers
        .iter()
        .find(|s| s.producer_id == pid)
        .expect("the transactional producer");
    assert_eq!(
        open.current_txn_start_offset, 3,
        "its transaction holds the LSO at 3"
    );
    let cli = strom(&b, &["transactions", "list"]);
    assert!(
        cli.lines()
            .any(|l| l.starts_with("watched-txn\t") && l.ends_with("\tOngoing")),
        "{cli}"
    );
    let cli = strom(
        &b,
        &[
            "transactions",
            "describe",
            "--transactional-id",
            "watched-txn",
        ],
    );
    assert!(
        cli.contains("\tOngoing\t") && cli.contains("watched-0"),
        "{cli}"
    );
    let cli = strom(
        &b,
        &[
            "transactions",
            "describe-producers",
            "--topic",
            "watched",
            "--partition",
            "0",
        ],
    );
    assert!(
        cli.lines()
            .any(|l| l.starts_with(&format!("{pid}\t")) && l.ends_with("\t3")),
        "{cli}"
    );

    p.commit_transaction().await.expect("commit");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let d = admin
            .describe_transaction("watched-txn")
            .await
            .expect("describe");
        if d.state == "CompleteCommit" {
            assert!(d.partitions.is_empty());
            break;
        }
        assert!(Instant::now() < deadline, "still {}", d.state);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let producers = admin
        .describe_producers(&TopicPartition::new("watched", 0))
        .await
        .expect("producers");
    assert!(producers.iter().all(|s| s.current_txn_start_offset == -1));
    // An unknown id is an error naming Kafka's code.
    let unknown = admin.describe_transaction("nobody").await;
    assert!(
        format!("{unknown:?}").contains("TRANSACTIONAL_ID_NOT_FOUND"),
        "{unknown:?}"
    );
}

/// Three transactions (commit, abort, commit) of `id` on `topic`, then what read_committed
/// and read_uncommitted consumers see; returns the producer's (transaction version, epochs
/// it went through).
async fn commit_abort_commit(bootstrap: &str, topic: &str, id: &str) -> (i16, i16) {
    let p = transactional(bootstrap, id).await;
    let (_, first) = p.identity().expect("identity");
    for (prefix, commit) in [("x", true), ("y", false), ("z", true)] {
        p.begin_transaction().await.expect("begin");
        send_all(&p, topic, seq(prefix, 0..50)).await;
        if commit {
            p.commit_transaction().await.expect("commit");
        } else {
            p.abort_transaction().await.expect("abort");
        }
    }
    let committed = read_values(bootstrap, topic, 1, IsolationLevel::ReadCommitted, 100).await;
    let want: Vec<String> = seq("x", 0..50).into_iter().chain(seq("z", 0..50)).collect();
    assert_eq!(values(&committed), want);
    let all = read_values(bootstrap, topic, 1, IsolationLevel::ReadUncommitted, 150).await;
    assert_eq!(all.len(), 150, "every data record, no markers");
    let (_, last) = p.identity().expect("identity");
    (p.transaction_version(), last - first)
}

/// The producer uses the transaction version the cluster finalized, as the Java client
/// does: version 1 (AddPartitionsToTxn, AddOffsetsToTxn, one epoch per session) on a cluster
/// formatted at Kafka 3.9's metadata, and version 2 once an operator upgrades
/// `transaction.version` (KIP-890 part 2: no partition adds, an epoch bump per end).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_producer_follows_the_clusters_transaction_version() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = integration_tests::Cluster::start(
        dir.path(),
        1,
        1,
        &["--release-version", "3.9"],
        &["--group-initial-rebalance-delay-ms", "0"],
    )
    .expect("cluster");
    let bootstrap = c.brokers[0].kafka.to_string();
    producer::create_replicated_topic(c.brokers[0].kafka, "tv1", 1, 1).await;
    producer::create_replicated_topic(c.brokers[0].kafka, "tv2", 1, 1).await;
    assert_eq!(
        commit_abort_commit(&bootstrap, "tv1", "follows").await,
        (1, 0),
        "version 1 keeps its epoch"
    );

    let mut admin = strom_client::admin::Admin::new(&bootstrap);
    // One request: transaction.version 2 is checked against the metadata.version it raises.
    admin
        .update_features(
            &[
                ("metadata.version".to_string(), 27),
                ("transaction.version".to_string(), 2),
            ],
            strom_client::admin::UpgradeType::Upgrade,
            false,
        )
        .await
        .expect("metadata.version 4.1 and transaction.version 2");
    // The broker learns the level from the metadata log.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let f = admin.describe_features().await.expect("describe");
        if f.finalized("transaction.version") == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "transaction.version 2 never showed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The same transactional id, now under version 2: one epoch bump per end.
    assert_eq!(
        commit_abort_commit(&bootstrap, "tv2", "follows").await,
        (2, 3)
    );
}
