//! The `strom` binary against a live broker: every subcommand, and bad arguments. The
//! binary runs as a child process through assert_cmd, stdin fed and stdout/stderr captured.

use std::process::Output;

use assert_cmd::Command;
use integration_tests::{binary, BrokerProcess};
use strom_client::partitioner::partition_for_key;

fn strom(broker: &BrokerProcess, args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(binary("strom", "STROM_BIN").expect("strom binary"));
    cmd.arg("--bootstrap-server")
        .arg(broker.kafka.to_string())
        .args(args)
        .timeout(std::time::Duration::from_secs(120));
    if let Some(input) = stdin {
        cmd.write_stdin(input);
    }
    cmd.output().expect("strom ran")
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "strom failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn fails(o: &Output, code: i32, needle: &str) {
    assert_eq!(
        o.status.code(),
        Some(code),
        "stderr: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(needle), "'{needle}' not in: {err}");
    if code == 1 {
        assert_eq!(err.trim().lines().count(), 1, "one line per failure: {err}");
    }
}

#[test]
fn every_subcommand_and_bad_arguments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = BrokerProcess::start(&dir.path().join("data"), &[]).expect("start");

    assert!(ok(&strom(
        &broker,
        &[
            "topics",
            "create",
            "cli",
            "--partitions",
            "3",
            "--config",
            "retention.ms=60000"
        ],
        None
    ))
    .contains("created topic cli (3 partitions"));
    fails(
        &strom(&broker, &["topics", "create", "cli"], None),
        1,
        "TOPIC_ALREADY_EXISTS",
    );
    fails(
        &strom(
            &broker,
            &["topics", "create", "bad", "--config", "nope"],
            None,
        ),
        2,
        "key=value",
    );
    fails(
        &strom(
            &broker,
            &["topics", "create", "bad2", "--config", "no.such=1"],
            None,
        ),
        1,
        "INVALID_CONFIG",
    );
    assert!(ok(&strom(&broker, &["topics", "list"], None))
        .lines()
        .any(|l| l == "cli"));
    let described = ok(&strom(&broker, &["topics", "describe", "cli"], None));
    assert_eq!(
        described
            .lines()
            .filter(|l| l.contains("partition "))
            .count(),
        3
    );
    assert!(ok(&strom(&broker, &["cluster"], None)).contains("broker 1 at"));

    let input: String = (0..30)
        .map(|i| format!("key{}:value{i}\n", i % 5))
        .collect();
    let produced = strom(
        &broker,
        &[
            "produce",
            "cli",
            "--key-separator",
            ":",
            "--header",
            "src=cli",
            "--compression",
            "zstd",
        ],
        Some(&input),
    );
    assert!(String::from_utf8_lossy(&ok_stderr(&produced)).contains("produced 30 records"));

    // Keys land where the Java partitioner puts them.
    for k in 0..5 {
        let key = format!("key{k}");
        let p = partition_for_key(key.as_bytes(), 3).to_string();
        let out = ok(&strom(
            &broker,
            &[
                "consume",
                "cli",
                "--partition",
                &p,
                "--from-beginning",
                "--format",
                "%k\\n",
            ],
            None,
        ));
        assert!(
            out.lines().filter(|l| *l == key).count() == 6,
            "{key} in partition {p}: {out}"
        );
    }
    let all = ok(&strom(
        &broker,
        &[
            "consume",
            "cli",
            "--from-beginning",
            "--format",
            "%k=%v %h\\n",
        ],
        None,
    ));
    assert_eq!(all.lines().count(), 30);
    assert!(all.lines().all(|l| l.ends_with(" src=cli")));
    let json = ok(&strom(
        &broker,
        &[
            "consume",
            "cli",
            "--partition",
            "0",
            "--offset",
            "0",
            "--count",
            "2",
            "--format",
            "json",
        ],
        None,
    ));
    let rows: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["offset"], 0);
    assert_eq!(rows[0]["headers"]["src"], "cli");

    let perf = ok(&strom(
        &broker,
        &[
            "perf",
            "produce",
            "--topic",
            "cli",
            "--records",
            "20000",
            "--record-size",
            "100",
            "--acks",
            "-1",
        ],
        None,
    ));
    assert!(perf.starts_with("20000 records sent"), "{perf}");
    ok(&strom(
        &broker,
        &["topics", "create", "perf-read", "--partitions", "1"],
        None,
    ));
    ok(&strom(
        &broker,
        &[
            "perf",
            "produce",
            "--topic",
            "perf-read",
            "--records",
            "5000",
        ],
        None,
    ));
    assert!(ok(&strom(
        &broker,
        &[
            "perf",
            "consume",
            "--topic",
            "perf-read",
            "--records",
            "5000"
        ],
        None
    ))
    .starts_with("5000 records consumed"));

    // Groups: reset offsets (dry run, then for real), list, describe with lag.
    let dry = ok(&strom(
        &broker,
        &[
            "groups",
            "reset-offsets",
            "g1",
            "--topic",
            "cli",
            "--to-latest",
        ],
        None,
    ));
    assert!(dry.contains("(dry run"), "{dry}");
    assert!(ok(&strom(
        &broker,
        &[
            "groups",
            "reset-offsets",
            "g1",
            "--topic",
            "cli",
            "--to-latest",
            "--execute"
        ],
        None
    ))
    .contains("reset 3 partition(s)"));
    assert!(ok(&strom(&broker, &["groups", "list"], None))
        .lines()
        .any(|l| l.starts_with("g1 ")));
    let described = ok(&strom(&broker, &["groups", "describe", "g1"], None));
    assert!(described.starts_with("group g1 state Empty"), "{described}");
    let lags: Vec<&str> = described
        .lines()
        .filter(|l| l.contains(" committed "))
        .collect();
    assert_eq!(lags.len(), 3, "{described}");
    assert!(lags.iter().all(|l| l.ends_with("lag 0")), "{described}");
    ok(&strom(
        &broker,
        &[
            "groups",
            "reset-offsets",
            "g1",
            "--topic",
            "cli",
            "--to-earliest",
            "--execute",
        ],
        None,
    ));
    let described = ok(&strom(&broker, &["groups", "describe", "g1"], None));
    let total_lag: i64 = described
        .lines()
        .filter_map(|l| {
            l.rsplit_once("lag ")
                .and_then(|(_, n)| n.parse::<i64>().ok())
        })
        .sum();
    // From the earliest offsets (0), the lag is everything in the topic: the 30 lines plus
    // the 20,000 perf records in partition 0.
    assert_eq!(total_lag, 20_030, "{described}");
    fails(
        &strom(
            &broker,
            &["groups", "reset-offsets", "g1", "--topic", "cli"],
            None,
        ),
        1,
        "say where to",
    );

    fails(
        &strom(
            &broker,
            &["consume", "missing-topic", "--from-beginning"],
            None,
        ),
        1,
        "UNKNOWN_TOPIC_OR_PARTITION",
    );
    fails(
        &strom(&broker, &["produce", "cli", "--acks", "5"], Some("x\n")),
        2,
        "acks",
    );
    // A new topic: refused without --create (the broker's auto-creation is not relied on),
    // created with it; --create on an existing topic changes nothing.
    fails(
        &strom(&broker, &["produce", "fresh"], Some("a\n")),
        1,
        "UNKNOWN_TOPIC_OR_PARTITION",
    );
    let created = strom(&broker, &["produce", "fresh", "--create"], Some("a\nb\n"));
    ok(&created);
    assert!(String::from_utf8_lossy(&created.stderr).contains("created topic fresh"));
    ok(&strom(
        &broker,
        &["produce", "fresh", "--create"],
        Some("c\n"),
    ));
    let read = ok(&strom(
        &broker,
        &["consume", "fresh", "--from-beginning", "--count", "3"],
        None,
    ));
    assert_eq!(read.lines().collect::<Vec<_>>(), ["a", "b", "c"]);
    fails(
        &strom(&broker, &["consume", "cli", "--offset", "soon"], None),
        1,
        "not a number",
    );
    fails(&strom(&broker, &["topics"], None), 2, "Usage");
    assert!(ok(&strom(&broker, &["topics", "delete", "cli"], None)).contains("deleted topic cli"));
    fails(
        &strom(&broker, &["topics", "delete", "cli"], None),
        1,
        "UNKNOWN_TOPIC_OR_PARTITION",
    );
    let unreachable = Command::new(binary("strom", "STROM_BIN").expect("strom"))
        .args(["--bootstrap-server", "127.0.0.1:1", "topics", "list"])
        .output()
        .expect("run");
    // assert_cmd's own assertions, for the exit code and the one line on stderr.
    Command::new(binary("strom", "STROM_BIN").expect("strom"))
        .args(["--bootstrap-server", "127.0.0.1:1", "cluster"])
        .assert()
        .code(1)
        .stderr(predicates::str::starts_with(
            "error: cannot reach the cluster at 127.0.0.1:1 (connection failed",
        ));
    Command::new(binary("strom", "STROM_BIN").expect("strom"))
        .args(["consume"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("<TOPIC>"));
    fails(&unreachable, 1, "connection failed");
}

fn ok_stderr(o: &Output) -> Vec<u8> {
    assert!(
        o.status.success(),
        "strom failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o.stderr.clone()
}

#[test]
fn group_consumers_files_alter_and_validate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = BrokerProcess::start(
        &dir.path().join("data"),
        &["--group-initial-rebalance-delay-ms", "0"],
    )
    .expect("start");
    assert!(ok(&strom(
        &broker,
        &[
            "topics",
            "create",
            "checked",
            "--partitions",
            "2",
            "--validate-only"
        ],
        None
    ))
    .contains("would create topic checked (2 partitions"));
    assert!(!ok(&strom(&broker, &["topics", "list"], None))
        .lines()
        .any(|l| l == "checked"));
    ok(&strom(
        &broker,
        &["topics", "create", "files", "--partitions", "2"],
        None,
    ));

    // A file with a progress bar, then a summary line.
    let file = dir.path().join("lines.txt");
    let lines: String = (0..1000)
        .map(|i| format!("k{}|line-{i}\n", i % 10))
        .collect();
    std::fs::write(&file, &lines).expect("write");
    let produced = strom(
        &broker,
        &[
            "produce",
            "files",
            "--file",
            file.to_str().expect("path"),
            "--key-separator",
            "|",
            "--progress",
            "always",
        ],
        None,
    );
    let err = String::from_utf8_lossy(&ok_stderr(&produced)).to_string();
    assert!(
        err.contains("100%") && err.contains("1000 records"),
        "{err}"
    );
    assert!(err.contains("produced 1000 records to files"), "{err}");
    let missing_file = strom(
        &broker,
        &["produce", "files", "--file", "/no/such/file"],
        None,
    );
    fails(&missing_file, 1, "cannot read /no/such/file");

    // --offset -N: the last N of each partition.
    let tail = ok(&strom(
        &broker,
        &["consume", "files", "--offset", "-3", "--format", "%p %o\\n"],
        None,
    ));
    assert_eq!(tail.lines().count(), 6, "{tail}");

    // Two group consumers in turn: the first reads 600 and commits them, the second (same
    // group) reads the other 400 and nothing twice.
    let first = ok(&strom(
        &broker,
        &[
            "consume",
            "files",
            "--group",
            "readers",
            "--from-beginning",
            "--count",
            "600",
        ],
        None,
    ));
    assert_eq!(first.lines().count(), 600);
    let rest = ok(&strom(
        &broker,
        &["consume", "files", "--group", "readers", "--from-beginning"],
        None,
    ));
    assert_eq!(
        rest.lines().count(),
        400,
        "resumes at the committed offsets"
    );
    let mut all: Vec<&str> = first.lines().chain(rest.lines()).collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 1000, "every line exactly once across the two");
    let described = ok(&strom(&broker, &["groups", "describe", "readers"], None));
    assert!(
        described.starts_with("group readers state Empty"),
        "{described}"
    );
    assert!(
        described.lines().filter(|l| l.ends_with("lag 0")).count() == 2,
        "{described}"
    );
    assert!(ok(&strom(&broker, &["groups", "delete", "readers"], None))
        .contains("deleted group readers"));
    assert!(!ok(&strom(&broker, &["groups", "list"], None))
        .lines()
        .any(|l| l.starts_with("readers ")));

    // Alter: set, reset, grow.
    assert!(ok(&strom(
        &broker,
        &[
            "topics",
            "alter",
            "files",
            "--set",
            "retention.ms=120000",
            "--partitions",
            "3"
        ],
        None
    ))
    .contains("now has 3 partitions"));
    let d = ok(&strom(&broker, &["topics", "describe", "files"], None));
    assert!(d.contains("config retention.ms=120000"), "{d}");
    assert_eq!(d.lines().filter(|l| l.contains("partition ")).count(), 3);
    ok(&strom(
        &broker,
        &["topics", "alter", "files", "--delete", "retention.ms"],
        None,
    ));
    assert!(!ok(&strom(&broker, &["topics", "describe", "files"], None))
        .contains("config retention.ms"));
    fails(
        &strom(
            &broker,
            &["topics", "alter", "files", "--partitions", "1"],
            None,
        ),
        1,
        "INVALID_PARTITIONS",
    );
    fails(
        &strom(&broker, &["topics", "alter", "files"], None),
        1,
        "say what to change",
    );

    // The cluster and internal topics.
    let cluster = ok(&strom(&broker, &["cluster"], None));
    assert!(cluster.contains("controller "), "{cluster}");
    assert!(cluster.contains("  files leaders 0:1 1:1 2:1"), "{cluster}");
    assert!(ok(&strom(&broker, &["topics", "list", "--internal"], None))
        .lines()
        .any(|l| l == "__consumer_offsets"));

    // Bad combinations.
    fails(
        &strom(
            &broker,
            &["consume", "files", "--group", "g", "--partition", "0"],
            None,
        ),
        2,
        "cannot be used with",
    );
    fails(
        &strom(
            &broker,
            &["consume", "files", "--group", "g", "--offset", "5"],
            None,
        ),
        1,
        "with --group",
    );
    fails(
        &strom(&broker, &["consume", "files", "--partition", "7"], None),
        1,
        "partition 7 of 'files' does not exist",
    );
}
