//! The streams wordcount example as real processes against a live broker: two instances
//! share the work of 200,000 lines; one is killed with SIGKILL half-way (exactly_once_v2)
//! or stopped cleanly (at_least_once) and started again. The latest count of every word on
//! the output topic must equal the count computed here from the input, and a read_committed
//! reader must never see a word's count go backwards; under exactly-once it must see each
//! word's counts as 1, 2, 3, ... with nothing repeated or skipped.
//!
//! `STROM_STREAMS_TEST_LINES` changes the number of lines.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use integration_tests::producer::committed_sum;
use integration_tests::{state_args, tail, AppProcess, BrokerProcess};
use strom_client::admin::{Admin, NewTopic};
use strom_client::consumer::{Consumer, ConsumerConfig, IsolationLevel, OffsetReset};
use strom_client::producer::{Producer, ProducerConfig, ProducerRecord};
use strom_client::TopicPartition;

const PARTITIONS: i32 = 4;

fn lines() -> usize {
    std::env::var("STROM_STREAMS_TEST_LINES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200_000)
}

/// Deterministic pseudo-random lines of 1-4 words from a vocabulary of 2,000.
fn input(n: usize) -> Vec<String> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..n)
        .map(|_| {
            let words = 1 + next() % 4;
            (0..words)
                .map(|_| {
                    let w = next() % 2000;
                    if w % 7 == 0 {
                        format!("Word{w}")
                    } else {
                        format!("word{w}")
                    }
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

fn expected(lines: &[String]) -> BTreeMap<String, i64> {
    let mut m = BTreeMap::new();
    for l in lines {
        for w in l
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
        {
            *m.entry(w.to_lowercase()).or_insert(0) += 1;
        }
    }
    m
}

async fn setup(bootstrap: &str, lines: &[String]) {
    let mut admin = Admin::new(bootstrap);
    for t in ["lines", "counts"] {
        admin
            .create_topic(&NewTopic::new(t, PARTITIONS, 1))
            .await
            .expect("create topic");
    }
    let p = Producer::new(ProducerConfig::new(bootstrap))
        .await
        .expect("producer");
    let mut acks = Vec::with_capacity(lines.len());
    for l in lines {
        acks.push(
            p.send(ProducerRecord::new("lines", l.clone()))
                .await
                .expect("send"),
        );
    }
    for a in acks {
        a.await.expect("acked");
    }
}

/// Reads the output read_committed until every word's latest count is the expected one.
/// Returns (records read, counts that went backwards, counts not one more than the last).
async fn read_until_complete(
    bootstrap: &str,
    expected: &BTreeMap<String, i64>,
    instances: &mut [&mut AppProcess],
) -> (usize, usize, usize) {
    let mut cfg = ConsumerConfig::new(bootstrap);
    cfg.isolation_level = IsolationLevel::ReadCommitted;
    cfg.auto_offset_reset = OffsetReset::Earliest;
    let mut c = Consumer::new(cfg).expect("consumer");
    c.assign(
        (0..PARTITIONS)
            .map(|p| TopicPartition::new("counts", p))
            .collect(),
    )
    .await
    .expect("assign");
    let mut latest: HashMap<String, i64> = HashMap::new();
    let (mut read, mut backwards, mut gaps) = (0, 0, 0);
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut last_report = Instant::now();
    loop {
        for r in c.poll(Duration::from_millis(500)).await.expect("poll") {
            read += 1;
            let word = String::from_utf8(r.key.expect("key").to_vec()).expect("utf8");
            let n: i64 = std::str::from_utf8(&r.value.expect("value"))
                .expect("utf8")
                .parse()
                .expect("a decimal count");
            let prev = latest.get(&word).copied().unwrap_or(0);
            if n < prev {
                backwards += 1;
            }
            if n != prev + 1 {
                gaps += 1;
            }
            latest.insert(word, n);
        }
        let done = expected
            .iter()
            .all(|(w, n)| latest.get(w).copied() == Some(*n));
        if done {
            assert_eq!(
                latest.len(),
                expected.len(),
                "words that are not in the input"
            );
            return (read, backwards, gaps);
        }
        for i in instances.iter_mut() {
            i.check_running().expect("wordcount running");
        }
        if last_report.elapsed() > Duration::from_secs(10) {
            last_report = Instant::now();
            let missing = expected
                .iter()
                .filter(|(w, n)| latest.get(*w).copied() != Some(**n))
                .count();
            eprintln!("read {read} counts; {missing} words not final yet");
        }
        assert!(
            Instant::now() < deadline,
            "the counts never matched the input (read {read})"
        );
    }
}

fn args(bootstrap: &str, app: &str, guarantee: &str, state: &Path) -> Vec<String> {
    state_args(
        &[
            "--bootstrap-server",
            bootstrap,
            "--input",
            "lines",
            "--output",
            "counts",
            "--application-id",
            app,
            "--processing-guarantee",
            guarantee,
            "--session-timeout-ms",
            "6000",
            "--commit-interval-ms",
            "200",
            // Every update forwarded: the exactly-once check below wants to see each count.
            "--cache-max-bytes",
            if guarantee == "exactly_once_v2" {
                "0"
            } else {
                "10485760"
            },
        ],
        state,
    )
}

async fn run(guarantee: &str, kill: bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = BrokerProcess::start(
        &dir.path().join("broker"),
        &[
            "--group-initial-rebalance-delay-ms",
            "0",
            "--transaction-abort-timed-out-transaction-cleanup-interval-ms",
            "1000",
        ],
    )
    .expect("broker");
    let bootstrap = broker.kafka.to_string();
    let lines = input(lines());
    let expected = expected(&lines);
    let started = Instant::now();
    setup(&bootstrap, &lines).await;
    eprintln!("produced {} lines in {:?}", lines.len(), started.elapsed());

    let app = "wordcount-app";
    let start = |name: &str| {
        AppProcess::start(
            "wordcount",
            "STROM_WORDCOUNT_BIN",
            args(
                &bootstrap,
                app,
                guarantee,
                &dir.path().join(format!("state-{name}")),
            ),
            dir.path().join(format!("{name}.log")),
        )
        .expect("start wordcount")
    };
    let mut a = start("a");
    let mut b = start("b");
    // Half-way through the input, stop one instance, then start it again.
    let half = lines.len() as i64 / 2;
    let deadline = Instant::now() + Duration::from_secs(600);
    while committed_sum(&bootstrap, app, "lines").await < half {
        a.check_running().expect("a running");
        b.check_running().expect("b running");
        assert!(
            Instant::now() < deadline,
            "no progress:\n{}",
            tail(&a.log, 30)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("half-way after {:?}", started.elapsed());
    if kill {
        b.kill9().expect("kill -9");
        tokio::time::sleep(Duration::from_secs(2)).await;
        b.restart().expect("restart");
    } else {
        b.stop().expect("clean stop");
        tokio::time::sleep(Duration::from_secs(2)).await;
        b.restart().expect("restart");
    }

    let (read, backwards, gaps) =
        read_until_complete(&bootstrap, &expected, &mut [&mut a, &mut b]).await;
    eprintln!(
        "{guarantee}: {} lines, {} words, {read} counts read, done after {:?}",
        lines.len(),
        expected.len(),
        started.elapsed()
    );
    assert_eq!(
        backwards, 0,
        "a read_committed reader saw counts go backwards"
    );
    if guarantee == "exactly_once_v2" {
        assert_eq!(
            gaps, 0,
            "exactly once: each word's counts must be 1, 2, 3, ... (a repeat or a skip means a duplicate or a loss)"
        );
    }
    a.stop().expect("a stops cleanly");
    b.stop().expect("b stops cleanly");
    for log in [dir.path().join("a.log"), dir.path().join("b.log")] {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(
            text.contains("stream thread stopped cleanly"),
            "no clean stop in {}:\n{}",
            log.display(),
            tail(&log, 20)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wordcount_exactly_once_survives_kill9() {
    run("exactly_once_v2", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wordcount_at_least_once_with_a_clean_restart() {
    run("at_least_once", false).await;
}
