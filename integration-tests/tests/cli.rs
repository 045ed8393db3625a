//! The `strom` binary against a live broker: every subcommand, and bad arguments.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use integration_tests::{binary, BrokerProcess};
use strom_client::partitioner::partition_for_key;

fn strom(broker: &BrokerProcess, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(binary("strom", "STROM_BIN").expect("strom binary"))
        .arg("--bootstrap-server")
        .arg(broker.kafka.to_string())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn strom");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
    }
    drop(child.stdin.take());
    child.wait_with_output().expect("strom ran")
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
