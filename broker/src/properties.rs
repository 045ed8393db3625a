//! `--config server.properties`: a Kafka property file mapped onto the broker's flags, so an
//! operator's habits and files carry over. A setting comes from, in order of precedence: the
//! command line, its `STROM_*` environment variable, the file, the default.
//!
//! Names map as Kafka's do (`log.retention.ms` is `--log-retention-ms`), plus Kafka's own
//! names for what Strom spells differently: `node.id`/`broker.id`, `log.dirs`/`log.dir` (the
//! first directory), `listeners` and `advertised.listeners` (the PLAINTEXT listener, else the
//! first), `controller.quorum.bootstrap.servers` and `controller.quorum.voters`. Settings Strom
//! does not have (thread counts, socket buffers, ...) are reported and ignored.

use std::ffi::OsString;
use std::path::Path;

/// Why a property file could not be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PropertiesError {
    #[error("--config {path}: {reason}")]
    Unreadable { path: String, reason: String },
    #[error("{path}:{line}: '{text}' is not key=value")]
    Malformed {
        path: String,
        line: usize,
        text: String,
    },
    #[error("--config needs a file")]
    MissingPath,
}

/// The file's `key=value` pairs in order (`#` and `!` comments, blank lines skipped).
pub fn parse(path: &str, text: &str) -> Result<Vec<(String, String)>, PropertiesError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
            continue;
        }
        let Some(at) = line.find(['=', ':']) else {
            return Err(PropertiesError::Malformed {
                path: path.to_string(),
                line: i + 1,
                text: line.to_string(),
            });
        };
        let (k, v) = (line[..at].trim(), line[at + 1..].trim());
        if k.is_empty() {
            return Err(PropertiesError::Malformed {
                path: path.to_string(),
                line: i + 1,
                text: line.to_string(),
            });
        }
        out.push((k.to_string(), v.to_string()));
    }
    Ok(out)
}

/// `host:port` of the PLAINTEXT listener in a Kafka listener list (else the first).
fn listener(list: &str) -> Option<String> {
    let entries: Vec<&str> = list
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let pick = entries
        .iter()
        .find(|e| e.starts_with("PLAINTEXT://"))
        .or(entries.first())?;
    let addr = pick.split_once("://").map_or(*pick, |(_, a)| a);
    Some(if addr.starts_with(':') {
        format!("0.0.0.0{addr}")
    } else {
        addr.to_string()
    })
}

/// The flag (long name) and value a Kafka property sets, if Strom has it.
fn map(command: &clap::Command, key: &str, value: &str) -> Option<(String, String)> {
    let (flag, value) = match key {
        "node.id" | "broker.id" => ("node-id".to_string(), value.to_string()),
        "log.dirs" | "log.dir" => (
            "data-dir".to_string(),
            value
                .split(',')
                .next()
                .unwrap_or_default()
                .trim()
                .to_string(),
        ),
        "listeners" => ("kafka-listen".to_string(), listener(value)?),
        "advertised.listeners" => ("advertised-kafka".to_string(), listener(value)?),
        "controller.quorum.bootstrap.servers" => ("quorum".to_string(), value.to_string()),
        "auto.create.topics.enable" => ("auto-create-topics".to_string(), value.to_string()),
        "controller.quorum.voters" => (
            "quorum".to_string(),
            value
                .split(',')
                .map(|v| v.split_once('@').map_or(v, |(_, a)| a).trim())
                .collect::<Vec<_>>()
                .join(","),
        ),
        other => (other.replace('.', "-"), value.to_string()),
    };
    command
        .get_arguments()
        .any(|a| a.get_long() == Some(flag.as_str()))
        .then_some((flag, value))
}

/// Expands `--config FILE` (or `STROM_CONFIG`) in `args` into flags for every setting the
/// command line and the environment (`env`) do not already give. Returns the new arguments
/// and the settings that were ignored (Kafka settings Strom does not have).
pub fn expand(
    args: Vec<OsString>,
    command: &clap::Command,
    env: impl Fn(&str) -> Option<String>,
) -> Result<(Vec<OsString>, Vec<String>), PropertiesError> {
    let strs: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let mut path = env("STROM_CONFIG");
    for (i, a) in strs.iter().enumerate() {
        if a == "--config" {
            path = Some(
                strs.get(i + 1)
                    .cloned()
                    .ok_or(PropertiesError::MissingPath)?,
            );
        } else if let Some(p) = a.strip_prefix("--config=") {
            path = Some(p.to_string());
        }
    }
    let Some(path) = path else {
        return Ok((args, vec![]));
    };
    let text =
        std::fs::read_to_string(Path::new(&path)).map_err(|e| PropertiesError::Unreadable {
            path: path.clone(),
            reason: e.to_string(),
        })?;
    let given = |flag: &str| {
        strs.iter()
            .any(|a| a == &format!("--{flag}") || a.starts_with(&format!("--{flag}=")))
            || command
                .get_arguments()
                .find(|a| a.get_long() == Some(flag))
                .and_then(|a| a.get_env())
                .is_some_and(|e| env(&e.to_string_lossy()).is_some())
    };
    let mut extra: Vec<OsString> = Vec::new();
    let mut ignored = Vec::new();
    for (key, value) in parse(&path, &text)? {
        let Some((flag, value)) = map(command, &key, &value) else {
            ignored.push(key);
            continue;
        };
        if flag == "config" || given(&flag) {
            continue;
        }
        let takes_value = command
            .get_arguments()
            .find(|a| a.get_long() == Some(flag.as_str()))
            .is_some_and(|a| a.get_action().takes_values());
        if takes_value {
            extra.push(format!("--{flag}").into());
            extra.push(value.into());
        } else if value == "true" {
            extra.push(format!("--{flag}").into());
        }
    }
    let mut out = args;
    let at = 1.min(out.len());
    out.splice(at..at, extra);
    Ok((out, ignored))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        config: crate::BrokerConfig,
        #[arg(long = "config")]
        config_file: Option<String>,
    }

    fn expanded(
        args: &[&str],
        file: &str,
        env: &[(&str, &str)],
    ) -> (crate::BrokerConfig, Vec<String>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("server.properties");
        std::fs::write(&path, file).expect("write");
        let mut all: Vec<OsString> = vec!["strom-broker".into()];
        all.extend(args.iter().map(OsString::from));
        all.push("--config".into());
        all.push(path.clone().into());
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let lookup = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let (args, ignored) = expand(all, &Cli::command(), lookup).expect("expand");
        (Cli::try_parse_from(args).expect("parse").config, ignored)
    }

    #[test]
    fn kafka_names_map_onto_flags_and_the_command_line_wins() {
        let file = "# a Kafka server.properties\n\
                    node.id=7\n\
                    listeners=PLAINTEXT://127.0.0.1:19092,CONTROLLER://:9093\n\
                    advertised.listeners=PLAINTEXT://kafka-7.example:19092\n\
                    log.dirs=/var/lib/strom,/mnt/other\n\
                    controller.quorum.voters=1@c1:9093,2@c2:9093\n\
                    num.partitions=6\n\
                    log.retention.ms = 1000\n\
                    num.network.threads=8\n\
                    auto.create.topics.enable=false\n";
        let (c, ignored) = expanded(&["--num-partitions", "3"], file, &[]);
        assert_eq!(c.node_id, 7);
        assert_eq!(c.kafka_listen.to_string(), "127.0.0.1:19092");
        assert_eq!(c.advertised_kafka.as_deref(), Some("kafka-7.example:19092"));
        assert_eq!(c.data_dir, std::path::PathBuf::from("/var/lib/strom"));
        assert_eq!(c.quorum, vec!["c1:9093".to_string(), "c2:9093".to_string()]);
        assert_eq!(c.num_partitions, 3, "the command line wins");
        assert_eq!(c.log_retention_ms, 1000);
        assert!(!c.auto_create_topics);
        assert_eq!(ignored, vec!["num.network.threads".to_string()]);
    }

    #[test]
    fn the_environment_wins_over_the_file_and_bad_lines_are_named() {
        let (c, _) = expanded(
            &["--dev"],
            "num.partitions=6\nlog.retention.ms=5\n",
            &[("STROM_NUM_PARTITIONS", "2")],
        );
        // The env var itself is read by clap from the process environment, not from the
        // test's table: the file must simply not have set the flag.
        assert_ne!(c.num_partitions, 6);
        assert_eq!(c.log_retention_ms, 5);
        assert_eq!(
            parse("s.properties", "ok=1\nno separator here\n"),
            Err(PropertiesError::Malformed {
                path: "s.properties".into(),
                line: 2,
                text: "no separator here".into()
            })
        );
    }
}
