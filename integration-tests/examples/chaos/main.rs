//! The chaos run against the docker compose cluster (`scripts/chaos.sh` builds and calls it).
//!
//! A seeded, logged schedule of faults — `docker kill` of a partition leader, `docker pause`
//! of one longer than the session timeout, cutting a leader off the network, killing the
//! active controller — each healed before the next, while an idempotent acks=all producer
//! ([`TestProducer`]) and a confluent-kafka consumer group (scripts/chaos_consumer.py) run.
//! At the end everything is healed, every partition is read in full, and the checker demands
//! 0 acknowledged records lost, 0 duplicates, per-producer order, and nothing consumed that
//! is not in the final log. Exit status 1 on any anomaly.
//!
//! Alongside runs an exactly-once consume-transform-produce pipeline (scripts/chaos_eos.py,
//! [`eos`]) fed by a second idempotent producer; after the faults its read_committed output
//! must hold every input record exactly once, transformed, in order.
//!
//!     chaos --seed N --duration SECS
//! Environment: COMPOSE (the compose command, project "strom"), STROM_PYTHON (a Python with
//! confluent-kafka; default .venv/bin/python).

mod eos;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use eos::{Eos, EosNames, Stop, EOS_PIPELINES};
use integration_tests::checker;
use integration_tests::http_json;
use integration_tests::producer::{self, read_all, ProducerOptions, TestProducer};

const BROKERS: [u16; 3] = [19092, 19093, 19094];
const BROKER_HTTP: [u16; 3] = [19644, 19645, 19646];
const CONTROLLER_HTTP: [u16; 3] = [19081, 19082, 19083];
const PARTITIONS: i32 = 3;
const NETWORK: &str = "strom_strom";

/// xorshift64*: a seeded schedule without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn log(start: Instant, what: &str) {
    println!("[{:7.2}s] {what}", start.elapsed().as_secs_f64());
}

fn compose(args: &[&str]) -> bool {
    let cmd = std::env::var("COMPOSE").unwrap_or_else(|_| "docker compose -p strom".into());
    let mut parts = cmd.split_whitespace();
    let Some(program) = parts.next() else {
        return false;
    };
    Command::new(program)
        .args(parts)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn container_id(service: &str) -> Option<String> {
    let cmd = std::env::var("COMPOSE").unwrap_or_else(|_| "docker compose -p strom".into());
    let mut parts = cmd.split_whitespace();
    let out = Command::new(parts.next()?)
        .args(parts)
        .args(["ps", "-q", service])
        .output()
        .ok()?;
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (!id.is_empty()).then_some(id)
}

fn docker(args: &[&str]) -> bool {
    Command::new("docker")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// partition -> (leader, isr) from any broker's HTTP API.
fn partitions(topic: &str) -> Option<Vec<(i32, Vec<i64>)>> {
    BROKER_HTTP.iter().find_map(|p| {
        let doc = http_json(local(*p), &format!("/v1/topics/{topic}")).ok()?;
        doc["partitions"]
            .as_array()?
            .iter()
            .map(|p| {
                Some((
                    p["leader"].as_i64()? as i32,
                    p["isr"]
                        .as_array()?
                        .iter()
                        .filter_map(|b| b.as_i64())
                        .collect(),
                ))
            })
            .collect()
    })
}

fn active_controller() -> Option<usize> {
    CONTROLLER_HTTP.iter().position(|p| {
        http_json(local(*p), "/v1/cluster").is_ok_and(|d| d["raft"]["state"] == "Leader")
    })
}

#[derive(Debug, Clone, Copy)]
enum Fault {
    KillBroker(i32),
    PauseBroker(i32),
    IsolateBroker(i32),
    KillController(usize),
    /// The leader's followers stall (paused, shorter than the session timeout), then the
    /// leader dies: what a broker that acks before replicating cannot survive.
    StallFollowersKillLeader(i32),
}

impl Fault {
    fn inject(self) -> bool {
        match self {
            Fault::KillBroker(b) => compose(&["kill", &format!("broker-{b}")]),
            Fault::PauseBroker(b) => compose(&["pause", &format!("broker-{b}")]),
            Fault::IsolateBroker(b) => container_id(&format!("broker-{b}"))
                .is_some_and(|id| docker(&["network", "disconnect", NETWORK, &id])),
            Fault::KillController(c) => compose(&["kill", &format!("controller-{}", c + 1)]),
            Fault::StallFollowersKillLeader(leader) => {
                let followers: Vec<String> = (1..=3)
                    .filter(|b| *b != leader)
                    .map(|b| format!("broker-{b}"))
                    .collect();
                let mut pause = vec!["pause"];
                pause.extend(followers.iter().map(String::as_str));
                let ok = compose(&pause);
                std::thread::sleep(Duration::from_millis(1500));
                let killed = compose(&["kill", &format!("broker-{leader}")]);
                let mut unpause = vec!["unpause"];
                unpause.extend(followers.iter().map(String::as_str));
                ok && compose(&unpause) && killed
            }
        }
    }

    fn heal(self) {
        match self {
            Fault::KillBroker(b) | Fault::StallFollowersKillLeader(b) => {
                compose(&["start", &format!("broker-{b}")]);
            }
            Fault::PauseBroker(b) => {
                compose(&["unpause", &format!("broker-{b}")]);
            }
            Fault::IsolateBroker(b) => {
                if let Some(id) = container_id(&format!("broker-{b}")) {
                    let alias = format!("broker-{b}");
                    docker(&["network", "connect", "--alias", &alias, NETWORK, &id]);
                }
            }
            Fault::KillController(c) => {
                compose(&["start", &format!("controller-{}", c + 1)]);
            }
        }
    }
}

/// Everything back: started, unpaused, connected.
fn heal_all() {
    for b in 1..=3 {
        Fault::PauseBroker(b).heal();
        Fault::IsolateBroker(b).heal();
        Fault::KillBroker(b).heal();
    }
    for c in 0..3 {
        Fault::KillController(c).heal();
    }
}

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// A topic of `PARTITIONS` partitions, RF=3, min.insync.replicas=2.
async fn create_topic(topic: &str) -> anyhow::Result<()> {
    let code = producer::create_topic(
        local(BROKERS[0]),
        topic,
        PARTITIONS,
        3,
        &[("min.insync.replicas", "2")],
    )
    .await?;
    anyhow::ensure!(code == 0, "CreateTopics: error {code}");
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let seed: u64 = arg("--seed").and_then(|s| s.parse().ok()).unwrap_or(1);
    let duration = Duration::from_secs(
        arg("--duration")
            .map(|s| s.trim_end_matches('s').to_string())
            .and_then(|s| s.parse().ok())
            .unwrap_or(120),
    );
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let start = Instant::now();
    let topic = format!("chaos-{seed}-{}", std::process::id());
    create_topic(&topic).await?;
    let eos_names = EosNames::new(seed);
    create_topic(&eos_names.input).await?;
    create_topic(&eos_names.output).await?;
    let brokers: Vec<SocketAddr> = BROKERS.iter().map(|p| local(*p)).collect();
    log(
        start,
        &format!(
            "seed {seed}, {duration:?}, topic {topic} (3 partitions, RF=3, min.insync.replicas=2)"
        ),
    );

    let producer = TestProducer::start(
        brokers.clone(),
        ProducerOptions {
            producer: 1,
            topic: topic.clone(),
            partitions: (0..PARTITIONS).collect(),
            records_per_batch: 10,
            request_timeout: Duration::from_secs(5),
            pace: Duration::from_millis(10),
            started: start,
        },
    )
    .await?;
    let python = std::env::var("STROM_PYTHON").unwrap_or_else(|_| ".venv/bin/python".into());
    let out_dir = tempfile::tempdir()?;
    let bootstrap = BROKERS
        .iter()
        .map(|p| format!("127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(",");
    let mut consumers: Vec<(Child, std::path::PathBuf)> = Vec::new();
    for i in 0..2 {
        let out = out_dir.path().join(format!("consumer-{i}.txt"));
        let child = Command::new(&python)
            .arg("scripts/chaos_consumer.py")
            .arg(&bootstrap)
            .arg(&topic)
            .arg(format!("group-{topic}"))
            .arg(&out)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        consumers.push((child, out));
    }
    log(
        start,
        "producer (idempotent, acks=all) and a 2-member consumer group running",
    );
    let mut eos = Eos::start(
        eos_names,
        &brokers,
        &python,
        &bootstrap,
        out_dir.path(),
        start,
    )
    .await?;
    log(
        start,
        &format!(
            "exactly-once pipeline running: {} -> {} ({EOS_PIPELINES} chaos_eos.py in group {}), fed by producer 2",
            eos.pipelines.names().input, eos.pipelines.names().output, eos.pipelines.names().group
        ),
    );

    let mut faults = 0;
    // Every kind once per round of five, in a seeded order.
    let mut round: Vec<u64> = Vec::new();
    // Pipeline restarts, each during the first fault after its time (not drawn from the
    // seeded generator, so the faults stay what the seed makes them): a SIGKILL mid-
    // transaction after a third of the run, a SIGTERM after two thirds.
    let mut restarts = vec![
        (duration * 2 / 3, 0, Stop::Term),
        (duration / 3, 1, Stop::Kill),
    ];
    while start.elapsed() + Duration::from_secs(8) < duration {
        tokio::time::sleep(Duration::from_millis(2000 + rng.below(2000))).await;
        if round.is_empty() {
            round = (0..5).collect();
            for i in (1..round.len()).rev() {
                round.swap(i, rng.below(i as u64 + 1) as usize);
            }
        }
        let kind = round.pop().unwrap_or(0);
        let partition = rng.below(PARTITIONS as u64) as usize;
        let fault = if kind == 3 {
            match active_controller() {
                Some(c) => Fault::KillController(c),
                None => continue,
            }
        } else {
            let leader = partitions(&topic)
                .and_then(|p| p.get(partition).map(|(l, _)| *l))
                .filter(|l| *l >= 1);
            let Some(b) = leader else {
                log(start, "no leader to hit; skipping");
                continue;
            };
            match kind {
                0 => Fault::KillBroker(b),
                1 => Fault::PauseBroker(b),
                2 => Fault::IsolateBroker(b),
                _ => Fault::StallFollowersKillLeader(b),
            }
        };
        let hold = Duration::from_millis(4000 + rng.below(2000));
        let ok = tokio::task::block_in_place(|| fault.inject());
        faults += 1;
        log(
            start,
            &format!(
                "fault {faults}: {fault:?} for {hold:?} (partition {partition}){}",
                if ok { "" } else { " — failed to inject" }
            ),
        );
        let hold_until = tokio::time::Instant::now() + hold;
        while restarts
            .last()
            .is_some_and(|(at, ..)| start.elapsed() >= *at)
        {
            let Some((_, i, how)) = restarts.pop() else {
                break;
            };
            eos.pipelines.restart(i, how);
            log(
                start,
                &format!("exactly-once pipeline {i}: {how:?}; it starts again once gone"),
            );
        }
        tokio::time::sleep_until(hold_until).await;
        tokio::task::block_in_place(|| fault.heal());
        log(start, &format!("healed {fault:?}"));
    }

    tokio::task::block_in_place(heal_all);
    log(
        start,
        "healing everything; waiting for every ISR to be whole",
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    let whole =
        |t: &str| partitions(t).is_some_and(|p| p.iter().all(|(l, isr)| *l >= 1 && isr.len() == 3));
    loop {
        let names = eos.pipelines.names();
        if whole(&topic) && whole(&names.input) && whole(&names.output) {
            break;
        }
        if Instant::now() > deadline {
            anyhow::bail!("the cluster did not heal within 120 s");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let acked_during = producer.acked().await;
    let ((history, sequence_errors), eos_fed) = tokio::join!(
        producer.stop(Duration::from_secs(60)),
        eos.producer.stop(Duration::from_secs(60))
    );
    log(
        start,
        &format!("producer stopped ({acked_during} acknowledged while faults ran)"),
    );

    // Let the group drain what was acknowledged, then stop it.
    let acked: HashSet<Vec<u8>> = history
        .iter()
        .filter(|s| s.acked_offset.is_some())
        .map(|s| s.value.clone())
        .collect();
    let read_consumed = |consumers: &[(Child, std::path::PathBuf)]| -> Vec<Vec<u8>> {
        consumers
            .iter()
            .flat_map(|(_, path)| {
                std::fs::read_to_string(path)
                    .unwrap_or_default()
                    .lines()
                    .map(|l| l.as_bytes().to_vec())
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    let drain = Instant::now() + Duration::from_secs(90);
    while Instant::now() < drain {
        let seen: HashSet<Vec<u8>> = read_consumed(&consumers).into_iter().collect();
        if acked.iter().all(|v| seen.contains(v)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for (child, _) in consumers.iter_mut() {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let _ = child.wait();
    }
    let consumed = read_consumed(&consumers);
    let consumed_distinct: HashSet<&Vec<u8>> = consumed.iter().collect();
    let not_consumed = acked
        .iter()
        .filter(|v| !consumed_distinct.contains(v))
        .count();

    let eos_verdict = eos.pipelines.finish(eos_fed, &brokers, start).await;

    let read = read_all(&brokers, &topic, &(0..PARTITIONS).collect::<Vec<_>>()).await?;
    let report = checker::check(&history, &read);
    let outside = checker::consumed_outside_log(&consumed, &read);
    println!("\n{faults} faults, seed {seed}");
    println!("{report}");
    println!(
        "consumer group: {} records consumed ({} distinct), {} consumed but not in the final log, {} acknowledged never consumed",
        consumed.len(),
        consumed_distinct.len(),
        outside.len(),
        not_consumed
    );
    println!("producer sequence errors: {sequence_errors}");
    let eos_ok = eos_verdict.print();
    if report.ok() && outside.is_empty() && sequence_errors == 0 && report.acked > 0 && eos_ok {
        println!("chaos: OK");
        Ok(())
    } else {
        println!("chaos: ANOMALIES FOUND");
        std::process::exit(1);
    }
}
