//! Standby replicas make a takeover cheap: two wordcount instances over 40,000 distinct
//! words (so each store holds ~20,000 keys); one is killed with SIGKILL and the other takes
//! its tasks. Without standbys the survivor restores the dead instance's stores from their
//! changelogs; with `num.standby.replicas=1` it promotes its warm standbys and reads only
//! the changelog tail. Both restore counts and times are printed; the test asserts the
//! standby takeover restores a small fraction of what the cold one does, and that the
//! counts stay right across the takeover.

use std::time::{Duration, Instant};

use integration_tests::producer::committed_sum;
use integration_tests::{state_args, AppProcess, BrokerProcess};
use strom_client::admin::{Admin, NewTopic};
use strom_client::consumer::{Consumer, ConsumerConfig, OffsetReset};
use strom_client::producer::{Producer, ProducerConfig, ProducerRecord};
use strom_client::TopicPartition;

const WORDS: usize = 40_000;

async fn produce(bs: &str, prefix: &str, n: usize) {
    let p = Producer::new(ProducerConfig::new(bs))
        .await
        .expect("producer");
    let mut acks = Vec::new();
    for i in 0..n {
        acks.push(
            p.send(ProducerRecord::new("lines", format!("{prefix}{i}")))
                .await
                .expect("send"),
        );
    }
    for a in acks {
        a.await.expect("acked");
    }
}

/// Waits until the output holds a count for each of `n` words `<prefix><i>`.
async fn wait_counted(bs: &str, prefix: &str, n: usize, app: &mut AppProcess) {
    let mut cfg = ConsumerConfig::new(bs);
    cfg.auto_offset_reset = OffsetReset::Earliest;
    let mut c = Consumer::new(cfg).expect("consumer");
    c.assign((0..4).map(|p| TopicPartition::new("counts", p)).collect())
        .await
        .expect("assign");
    let mut seen = std::collections::HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while seen.len() < n {
        assert!(
            Instant::now() < deadline,
            "only {} of {n} '{prefix}' words counted",
            seen.len()
        );
        app.check_running().expect("survivor runs");
        for r in c.poll(Duration::from_millis(300)).await.expect("poll") {
            let k = String::from_utf8(r.key.unwrap_or_default().to_vec()).expect("utf8");
            if k.starts_with(prefix) {
                assert_eq!(r.value.as_deref(), Some(&b"1"[..]), "{k} counted once");
                seen.insert(k);
            }
        }
    }
}

/// Returns (records restored by the survivor after the kill, their restore time in ms,
/// time from the kill until new input was counted).
async fn takeover(standbys: usize) -> (u64, u64, Duration) {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = BrokerProcess::start(
        &dir.path().join("broker"),
        &["--group-initial-rebalance-delay-ms", "0"],
    )
    .expect("broker");
    let bs = broker.kafka.to_string();
    let mut admin = Admin::new(&bs);
    for t in ["lines", "counts"] {
        admin
            .create_topic(&NewTopic::new(t, 4, 1))
            .await
            .expect("topic");
    }
    let start = |name: &str| {
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
                    "standby-app",
                    "--session-timeout-ms",
                    "6000",
                    "--commit-interval-ms",
                    "200",
                    "--num-standby-replicas",
                    &standbys.to_string(),
                ],
                &dir.path().join(format!("state-{name}")),
            ),
            dir.path().join(format!("{name}.log")),
        )
        .expect("start wordcount")
    };
    let mut a = start("a");
    let mut b = start("b");
    // Both instances in the group before any input, so that each task's state grows on one
    // instance only (an instance that ran a task first keeps a checkpoint of it, which
    // would make the "cold" takeover warm).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let group = admin.describe_group("standby-app").await;
        if group.is_ok_and(|g| g.state == "Stable" && g.members.len() == 2) {
            break;
        }
        a.check_running().expect("a runs");
        b.check_running().expect("b runs");
        assert!(
            Instant::now() < deadline,
            "the two instances never formed a group"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    produce(&bs, "u", WORDS).await;
    let deadline = Instant::now() + Duration::from_secs(180);
    while committed_sum(&bs, "standby-app", "lines").await < WORDS as i64 {
        a.check_running().expect("a runs");
        b.check_running().expect("b runs");
        assert!(Instant::now() < deadline, "the input was never processed");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Give standbys a moment to read the changelogs' last records (a lagging standby only
    // makes its takeover restore a little more).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = std::fs::read_to_string(&a.log)
        .unwrap_or_default()
        .lines()
        .count();
    b.kill9().expect("kill -9");
    let killed = Instant::now();
    produce(&bs, "v", 100).await;
    wait_counted(&bs, "v", 100, &mut a).await;
    let took = killed.elapsed();
    a.stop().expect("a stops cleanly");
    let log = std::fs::read_to_string(&a.log).unwrap_or_default();
    for line in log.lines().skip(before) {
        if line.contains("restored state stores") || line.contains("becomes active") {
            eprintln!("survivor: {line}");
        }
    }
    let (mut records, mut ms) = (0u64, 0u64);
    for line in log
        .lines()
        .skip(before)
        .filter(|l| l.contains("restored state stores"))
    {
        let field = |name: &str| -> u64 {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(name))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        records += field("records=");
        ms += field("elapsed_ms=");
    }
    (records, ms, took)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standby_takeover_restores_far_less_than_a_cold_one() {
    let (cold, cold_ms, cold_total) = takeover(0).await;
    let (warm, warm_ms, warm_total) = takeover(1).await;
    eprintln!(
        "takeover of ~{} keys: without standbys restored {cold} records in {cold_ms} ms ({cold_total:?} from kill to new counts); with a standby {warm} records in {warm_ms} ms ({warm_total:?})",
        WORDS / 2
    );
    assert!(
        cold >= (WORDS / 4) as u64,
        "a cold takeover restores the dead instance's keys: {cold}"
    );
    assert!(
        warm * 10 < cold,
        "a standby takeover restores a fraction: {warm} vs {cold}"
    );
}
