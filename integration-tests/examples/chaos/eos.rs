//! The exactly-once pipeline of the chaos run.
//!
//! Producer 2 (idempotent, acks=all, like producer 1) feeds an input topic; two
//! scripts/chaos_eos.py processes in one consumer group, with transactional ids
//! `<group>-txn-0` and `-1`, read it with read_committed and write each value upper-cased to
//! the same partition of an output topic, in transactions that carry the group's offsets
//! (send_offsets_to_transaction). Besides the broker faults, during the first fault after a
//! third of the run pipeline 1 gets SIGKILL mid-transaction (the next incarnation's
//! InitProducerId must abort what it left open) and after two thirds pipeline 0 gets
//! SIGTERM; each starts again once gone, so partitions move between them.
//!
//! After the faults, with producer 2 stopped:
//!
//! ```text
//!   chaos_eos_check.py caught-up       polls until the group's committed offsets (require_stable)
//!                                      are the input's end offsets, with a deadline
//!   SIGTERM to the pipelines           each finishes its transaction and leaves
//!   read_all(input)                    the whole input log, checked against producer 2's
//!                                      history like the main topic
//!   chaos_eos_check.py read-committed  the output as a read_committed consumer gets it
//!   checker::check_transformed         every input record exactly once, upper-cased, in its
//!                                      partition and in input order; nothing else
//! ```

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use integration_tests::checker::{self, Found, Sent, TransformReport};
use integration_tests::producer::{read_all, ProducerOptions, TestProducer};
use integration_tests::tail;

use super::{log, PARTITIONS};

/// Processes in the exactly-once pipeline's group.
pub const EOS_PIPELINES: usize = 2;
/// How long the pipeline may take, once the faults are healed and its input stopped growing,
/// to commit offsets at the input's end.
const EOS_CATCH_UP: Duration = Duration::from_secs(90);
/// How long a pipeline may take to finish its transaction and leave after SIGTERM (a client
/// call stuck in librdkafka is given up after 30 s, then the producer is replaced).
const EOS_STOP: Duration = Duration::from_secs(60);
/// How long reading the output may take (a transaction left open would hold the last stable
/// offset until the coordinator aborts it: chaos_eos.py asks for a 20 s timeout).
const EOS_READ: Duration = Duration::from_secs(60);

/// The pipeline's topics and group.
pub struct EosNames {
    pub input: String,
    pub output: String,
    pub group: String,
}

impl EosNames {
    pub fn new(seed: u64) -> Self {
        let tag = format!("{seed}-{}", std::process::id());
        Self {
            input: format!("eos-in-{tag}"),
            output: format!("eos-out-{tag}"),
            group: format!("eos-{tag}"),
        }
    }
}

/// The exactly-once pipeline while it runs: the producer feeding its input and the
/// scripts/chaos_eos.py processes.
pub struct Eos {
    pub producer: TestProducer,
    pub pipelines: Pipelines,
}

impl Eos {
    /// Starts producer 2 on the (created) input topic and the pipeline processes, which log
    /// to and leave their counters in `dir`.
    pub async fn start(
        names: EosNames,
        brokers: &[SocketAddr],
        python: &str,
        bootstrap: &str,
        dir: &Path,
        started: Instant,
    ) -> anyhow::Result<Self> {
        let producer = TestProducer::start(
            brokers.to_vec(),
            ProducerOptions {
                producer: 2,
                topic: names.input.clone(),
                partitions: (0..PARTITIONS).collect(),
                records_per_batch: 10,
                request_timeout: Duration::from_secs(5),
                pace: Duration::from_millis(10),
                started,
            },
        )
        .await?;
        let launcher = Arc::new(Launcher {
            names,
            python: python.to_string(),
            bootstrap: bootstrap.to_string(),
            dir: dir.to_path_buf(),
        });
        let procs = (0..EOS_PIPELINES)
            .map(|i| launcher.spawn(i, 0).map(Some))
            .collect::<anyhow::Result<_>>()?;
        Ok(Self {
            producer,
            pipelines: Pipelines {
                launcher,
                procs,
                restarting: Vec::new(),
                problems: Vec::new(),
            },
        })
    }
}

/// What starting a pipeline process takes.
struct Launcher {
    names: EosNames,
    python: String,
    bootstrap: String,
    dir: PathBuf,
}

impl Launcher {
    /// Pipeline `i`'s log (stderr of every incarnation).
    fn log(&self, i: usize) -> PathBuf {
        self.dir.join(format!("eos-{i}.log"))
    }

    /// Starts incarnation `n` of pipeline `i` (transactional id `<group>-txn-<i>`); every
    /// incarnation appends to one log.
    fn spawn(&self, i: usize, n: usize) -> anyhow::Result<Pipeline> {
        let log = self.log(i);
        let stats = self.dir.join(format!("eos-{i}-{n}.json"));
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?;
        let child = Command::new(&self.python)
            .arg("scripts/chaos_eos.py")
            .args([&self.bootstrap, &self.names.input, &self.names.output])
            .arg(&self.names.group)
            .arg(format!("{}-txn-{i}", self.names.group))
            .arg(&stats)
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()?;
        Ok(Pipeline {
            index: i,
            child,
            stats: vec![stats],
            log,
        })
    }
}

/// One scripts/chaos_eos.py process.
struct Pipeline {
    index: usize,
    child: Child,
    /// Where each incarnation of this pipeline leaves its counters (a SIGKILLed one, none).
    stats: Vec<PathBuf>,
    log: PathBuf,
}

impl Pipeline {
    /// Signals the process and waits up to [`EOS_STOP`] for it to exit; one still running then
    /// dumps its Python stacks to its log (SIGUSR1) and is killed. Returns what went wrong,
    /// if anything: after SIGTERM the process must exit 0 in time.
    fn stop(&mut self, how: Stop) -> Option<String> {
        let i = self.index;
        let signal = match how {
            Stop::Term => "-TERM",
            Stop::Kill => "-KILL",
        };
        signal_process(&self.child, signal);
        let deadline = Instant::now() + EOS_STOP;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) if status.success() || matches!(how, Stop::Kill) => return None,
                Ok(Some(status)) => return Some(format!("pipeline {i} exited with {status}")),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                _ => break,
            }
        }
        signal_process(&self.child, "-USR1");
        std::thread::sleep(Duration::from_millis(500));
        let _ = self.child.kill();
        let _ = self.child.wait();
        Some(format!(
            "pipeline {i} still running {EOS_STOP:?} after {signal}: killed (stacks in {})",
            self.log.display()
        ))
    }
}

fn signal_process(child: &Child, signal: &str) {
    let _ = Command::new("kill")
        .arg(signal)
        .arg(child.id().to_string())
        .status();
}

/// How a pipeline is stopped before it is started again.
#[derive(Debug, Clone, Copy)]
pub enum Stop {
    /// SIGTERM: it commits or aborts its open transaction and leaves the group.
    Term,
    /// SIGKILL mid-transaction: the transaction stays open until the next incarnation's
    /// InitProducerId aborts it, and the group notices the member gone after its session.
    Kill,
}

/// The pipeline processes. A restart runs on a thread of its own (stopping a process can
/// take as long as its last commit), so the faults keep to their schedule.
pub struct Pipelines {
    launcher: Arc<Launcher>,
    /// None while restarting.
    procs: Vec<Option<Pipeline>>,
    restarting: Vec<std::thread::JoinHandle<(Option<Pipeline>, Vec<String>)>>,
    /// Pipelines that did not stop as asked or did not start again.
    problems: Vec<String>,
}

impl Pipelines {
    pub fn names(&self) -> &EosNames {
        &self.launcher.names
    }

    /// Stops pipeline `i` as `how` says and, once it is gone, starts it again with the same
    /// transactional id.
    pub fn restart(&mut self, i: usize, how: Stop) {
        let Some(mut old) = self.procs.get_mut(i).and_then(Option::take) else {
            return;
        };
        let launcher = self.launcher.clone();
        self.restarting.push(std::thread::spawn(move || {
            let mut problems: Vec<String> = old.stop(how).into_iter().collect();
            match launcher.spawn(i, old.stats.len()) {
                Ok(next) => {
                    old.child = next.child;
                    old.stats.extend(next.stats);
                    (Some(old), problems)
                }
                Err(e) => {
                    problems.push(format!("pipeline {i} did not start again: {e}"));
                    (None, problems)
                }
            }
        }));
    }

    /// Waits for restarts under way; the pipelines that are running.
    fn settle(&mut self) -> Vec<Pipeline> {
        for handle in self.restarting.drain(..) {
            match handle.join() {
                Ok((p, problems)) => {
                    self.problems.extend(problems);
                    if let Some(p) = p {
                        let i = p.index;
                        self.procs[i] = Some(p);
                    }
                }
                Err(_) => self.problems.push("a restart thread panicked".into()),
            }
        }
        self.procs.iter_mut().filter_map(Option::take).collect()
    }

    /// After the faults, with producer 2 stopped (`fed`: its history and sequence errors):
    /// waits for the group's committed offsets to reach the input's end, stops the pipelines,
    /// reads the input in full and the output with read_committed, and judges.
    pub async fn finish(
        mut self,
        fed: (Vec<Sent>, usize),
        brokers: &[SocketAddr],
        started: Instant,
    ) -> EosVerdict {
        let (history, sequence_errors) = fed;
        let mut running = tokio::task::block_in_place(|| self.settle());
        let launcher = &self.launcher;
        let (names, python, bootstrap) = (&launcher.names, &launcher.python, &launcher.bootstrap);
        let timeout = EOS_CATCH_UP.as_secs().to_string();
        let caught_up = tokio::task::block_in_place(|| {
            eos_check(
                python,
                &["caught-up", bootstrap, &names.input, &names.group, &timeout],
            )
        });
        log(started, &format!("exactly-once pipeline: {}", caught_up.1));
        let mut problems = std::mem::take(&mut self.problems);
        let stopped: Vec<Option<String>> = tokio::task::block_in_place(|| {
            std::thread::scope(|s| {
                let stopping: Vec<_> = running
                    .iter_mut()
                    .map(|p| s.spawn(|| p.stop(Stop::Term)))
                    .collect();
                stopping
                    .into_iter()
                    .map(|h| h.join().unwrap_or_else(|_| Some("a stop panicked".into())))
                    .collect()
            })
        });
        problems.extend(stopped.into_iter().flatten());
        let mut stats: BTreeMap<String, u64> = BTreeMap::new();
        for path in running.iter().flat_map(|p| &p.stats) {
            let counters: serde_json::Map<String, serde_json::Value> =
                std::fs::read_to_string(path)
                    .ok()
                    .and_then(|s| serde_json::from_str(&s).ok())
                    .unwrap_or_default();
            for (k, v) in counters {
                *stats.entry(k).or_default() += v.as_u64().unwrap_or(0);
            }
        }
        let logs: Vec<PathBuf> = (0..EOS_PIPELINES).map(|i| launcher.log(i)).collect();
        log(started, "exactly-once pipeline stopped");

        let partitions: Vec<i32> = (0..PARTITIONS).collect();
        let input = read_all(brokers, &names.input, &partitions).await;
        let out_file = launcher.dir.join("eos-output.txt");
        let read = tokio::task::block_in_place(|| {
            let timeout = EOS_READ.as_secs().to_string();
            let out = out_file.to_string_lossy();
            eos_check(
                python,
                &["read-committed", bootstrap, &names.output, &out, &timeout],
            )
        });
        let output = match (input, read) {
            (Err(e), _) => Err(format!("reading the input failed: {e:#}")),
            (_, (false, line)) => Err(format!("reading the output failed: {line}")),
            (Ok(input), (true, _)) => std::fs::read_to_string(&out_file)
                .map_err(anyhow::Error::from)
                .and_then(|text| parse_records(&text))
                .map_err(|e| format!("reading {}: {e:#}", out_file.display()))
                .map(|output| {
                    let acked: HashSet<Vec<u8>> = history
                        .iter()
                        .filter(|s| s.acked_offset.is_some())
                        .map(|s| s.value.clone())
                        .collect();
                    (
                        checker::check(&history, &input),
                        checker::check_transformed(&input, &acked, &output, upper),
                    )
                }),
        };
        EosVerdict {
            caught_up,
            problems,
            stats,
            sequence_errors,
            output,
            logs,
        }
    }
}

/// Runs scripts/chaos_eos_check.py; its exit status and its output's last line.
fn eos_check(python: &str, args: &[&str]) -> (bool, String) {
    match Command::new(python)
        .arg("scripts/chaos_eos_check.py")
        .args(args)
        .stderr(Stdio::null())
        .output()
    {
        Ok(out) => (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .last()
                .unwrap_or("(no output)")
                .to_string(),
        ),
        Err(e) => (false, format!("could not run chaos_eos_check.py: {e}")),
    }
}

/// "partition offset value" lines, as chaos_eos_check.py read-committed writes them.
fn parse_records(text: &str) -> anyhow::Result<Vec<Found>> {
    text.lines()
        .map(|line| {
            let mut parts = line.splitn(3, ' ');
            let mut next = || parts.next().with_context(|| format!("bad line {line:?}"));
            Ok(Found {
                partition: next()?.parse()?,
                offset: next()?.parse()?,
                value: next()?.as_bytes().to_vec(),
            })
        })
        .collect()
}

/// The pipeline's transformation, as chaos_eos.py applies it (Python's bytes.upper).
fn upper(v: &[u8]) -> Vec<u8> {
    v.to_ascii_uppercase()
}

/// What the exactly-once check found.
pub struct EosVerdict {
    /// Whether the committed offsets reached the input's end, and the checker's account.
    caught_up: (bool, String),
    /// Pipelines that did not stop as asked or did not start again.
    problems: Vec<String>,
    /// The pipelines' counters, summed.
    stats: BTreeMap<String, u64>,
    /// Sequence errors producer 2 got.
    sequence_errors: usize,
    /// The input against producer 2's history, and the output against the input.
    output: Result<(checker::Report, TransformReport), String>,
    logs: Vec<PathBuf>,
}

impl EosVerdict {
    /// Prints the summary lines; true when nothing is wrong.
    pub fn print(&self) -> bool {
        let counters = |names: &[&str]| -> String {
            names
                .iter()
                .map(|n| format!("{n} {}", self.stats.get(*n).copied().unwrap_or(0)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        println!(
            "eos pipelines: {}; {}",
            counters(&["consumed", "commits", "committed_records", "aborts"]),
            counters(&[
                "abortable",
                "fatal",
                "other_errors",
                "revoked_mid_transaction",
                "lost_mid_transaction",
                "producers_replaced",
                "hung_calls",
                "rewinds",
                "retried",
                "assignments",
            ])
        );
        let mut ok = self.caught_up.0 && self.problems.is_empty() && self.sequence_errors == 0;
        match &self.output {
            Ok((input, output)) => {
                println!("eos input: {input}");
                println!(
                    "eos input producer sequence errors: {}",
                    self.sequence_errors
                );
                println!("eos output: {output}");
                ok &= input.ok() && output.ok() && output.acked > 0;
            }
            Err(e) => {
                println!("eos: {e}");
                ok = false;
            }
        }
        if !self.caught_up.0 {
            println!("eos: {}", self.caught_up.1);
        }
        for p in &self.problems {
            println!("eos: {p}");
        }
        if !ok {
            for log in &self.logs {
                println!("--- {} (last 20 lines)\n{}", log.display(), tail(log, 20));
            }
        }
        ok
    }
}
