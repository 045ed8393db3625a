//! `--config server.properties`: a Kafka property file mapped onto the broker's flags, so an
//! operator's habits and files carry over. A setting comes from, in order of precedence: the
//! command line, its `STROM_*` environment variable, the file, the default.
//!
//! Names map as Kafka's do (`log.retention.ms` is `--log-retention-ms`,
//! `listener.security.protocol.map`, `inter.broker.listener.name`, `ssl.client.auth`,
//! `sasl.enabled.mechanisms`, `super.users` likewise), plus Kafka's own names for what Strom
//! spells differently: `node.id`/`broker.id`, `log.dirs`/`log.dir` (the first directory),
//! `listeners` and `advertised.listeners` (without the `controller.listener.names` ones: one
//! PLAINTEXT listener is `--kafka-listen`, several are `--listeners`),
//! `controller.quorum.bootstrap.servers` and `controller.quorum.voters`, and PEM stores
//! (`ssl.keystore.type=PEM`: `ssl.keystore.location` holds the key and the chain;
//! `ssl.truststore.type=PEM`: `ssl.truststore.location` holds the CA). Settings Strom does
//! not have (thread counts, socket buffers, JKS stores, ...) are reported and ignored.

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

/// What mapping one property needs to know about the rest of the file.
#[derive(Debug, Default)]
struct FileContext {
    /// `controller.listener.names`: listeners of the controller, not of this broker.
    controller_listeners: Vec<String>,
    keystore_pem: bool,
    truststore_pem: bool,
}

impl FileContext {
    fn of(pairs: &[(String, String)]) -> Self {
        let get = |k: &str| pairs.iter().rev().find(|(key, _)| key == k).map(|(_, v)| v);
        Self {
            controller_listeners: get("controller.listener.names")
                .map_or("CONTROLLER", |v| v.as_str())
                .split(',')
                .map(|n| n.trim().to_ascii_uppercase())
                .filter(|n| !n.is_empty())
                .collect(),
            keystore_pem: get("ssl.keystore.type").is_some_and(|t| t.eq_ignore_ascii_case("PEM")),
            truststore_pem: get("ssl.truststore.type")
                .is_some_and(|t| t.eq_ignore_ascii_case("PEM")),
        }
    }

    /// The broker's listeners of a Kafka listener list: `NAME://host:port` each, an empty
    /// host as 0.0.0.0, the controller's left out.
    fn broker_listeners(&self, list: &str) -> Vec<(String, String)> {
        list.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .filter_map(|e| {
                let (name, addr) = e.split_once("://")?;
                let name = name.trim().to_ascii_uppercase();
                if self.controller_listeners.contains(&name) {
                    return None;
                }
                let addr = if addr.starts_with(':') {
                    format!("0.0.0.0{addr}")
                } else {
                    addr.to_string()
                };
                Some((name, addr))
            })
            .collect()
    }

    /// `listeners` / `advertised.listeners`: one PLAINTEXT listener is the plain flag (as
    /// before listeners had names), several are the Kafka-style list.
    fn listener_flags(
        &self,
        list: &str,
        plain: &str,
        named: &str,
    ) -> Option<Vec<(String, String)>> {
        let ls = self.broker_listeners(list);
        match ls.as_slice() {
            [] => None,
            [(name, addr)] if name == "PLAINTEXT" => Some(vec![(plain.to_string(), addr.clone())]),
            _ => Some(vec![(
                named.to_string(),
                ls.iter()
                    .map(|(n, a)| format!("{n}://{a}"))
                    .collect::<Vec<_>>()
                    .join(","),
            )]),
        }
    }
}

/// The flags (long names) and values a Kafka property sets, if Strom has them.
fn map(
    command: &clap::Command,
    ctx: &FileContext,
    key: &str,
    value: &str,
) -> Option<Vec<(String, String)>> {
    let one = |flag: &str, v: &str| Some(vec![(flag.to_string(), v.to_string())]);
    let mapped = match key {
        "node.id" | "broker.id" => one("node-id", value),
        "log.dirs" | "log.dir" => one(
            "data-dir",
            value.split(',').next().unwrap_or_default().trim(),
        ),
        "listeners" => ctx.listener_flags(value, "kafka-listen", "listeners"),
        "advertised.listeners" => {
            ctx.listener_flags(value, "advertised-kafka", "advertised-listeners")
        }
        "controller.quorum.bootstrap.servers" => one("quorum", value),
        "auto.create.topics.enable" => one("auto-create-topics", value),
        "controller.quorum.voters" => one(
            "quorum",
            &value
                .split(',')
                .map(|v| v.split_once('@').map_or(v, |(_, a)| a).trim())
                .collect::<Vec<_>>()
                .join(","),
        ),
        // A PEM keystore file holds the private key and the certificate chain.
        "ssl.keystore.location" if ctx.keystore_pem => Some(vec![
            ("ssl-certificate".to_string(), value.to_string()),
            ("ssl-key".to_string(), value.to_string()),
        ]),
        "ssl.truststore.location" if ctx.truststore_pem => one("ssl-ca", value),
        "ssl.keystore.location" | "ssl.truststore.location" => None,
        // Read by the listener mapping above; nothing of its own.
        "controller.listener.names" => Some(vec![]),
        "ssl.keystore.type" | "ssl.truststore.type" if value.eq_ignore_ascii_case("PEM") => {
            Some(vec![])
        }
        other => one(&other.replace('.', "-"), value),
    }?;
    let known = |flag: &str| command.get_arguments().any(|a| a.get_long() == Some(flag));
    mapped.iter().all(|(f, _)| known(f)).then_some(mapped)
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
    let pairs = parse(&path, &text)?;
    let ctx = FileContext::of(&pairs);
    for (key, value) in pairs {
        let Some(flags) = map(command, &ctx, &key, &value) else {
            ignored.push(key);
            continue;
        };
        for (flag, value) in flags {
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
    fn secured_listener_lists_and_pem_stores_map_as_kafka_means_them() {
        let file = "listeners=PLAINTEXT://:9092,SASL_SSL://0.0.0.0:9094,CONTROLLER://:9093\n\
                    advertised.listeners=PLAINTEXT://b1:9092,SASL_SSL://b1:9094\n\
                    listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT\n\
                    inter.broker.listener.name=SASL_SSL\n\
                    ssl.keystore.type=PEM\n\
                    ssl.keystore.location=/etc/strom/b1.pem\n\
                    ssl.truststore.type=PEM\n\
                    ssl.truststore.location=/etc/strom/ca.pem\n\
                    ssl.client.auth=required\n\
                    sasl.enabled.mechanisms=SCRAM-SHA-512\n\
                    super.users=User:admin;User:broker\n\
                    allow.everyone.if.no.acl.found=true\n";
        let (c, ignored) = expanded(&[], file, &[]);
        assert_eq!(
            c.listeners.as_deref(),
            Some("PLAINTEXT://0.0.0.0:9092,SASL_SSL://0.0.0.0:9094")
        );
        assert_eq!(
            c.advertised_listeners.as_deref(),
            Some("PLAINTEXT://b1:9092,SASL_SSL://b1:9094")
        );
        assert_eq!(c.inter_broker_listener_name.as_deref(), Some("SASL_SSL"));
        let pem = Some(std::path::PathBuf::from("/etc/strom/b1.pem"));
        assert_eq!(
            (c.ssl_certificate.clone(), c.ssl_key.clone()),
            (pem.clone(), pem)
        );
        assert_eq!(
            c.ssl_ca,
            Some(std::path::PathBuf::from("/etc/strom/ca.pem"))
        );
        assert_eq!(
            c.ssl_client_auth,
            crate::security::tls::ClientAuth::Required
        );
        assert_eq!(c.sasl_enabled_mechanisms, vec!["SCRAM-SHA-512".to_string()]);
        assert_eq!(
            c.super_users,
            vec!["User:admin".to_string(), "User:broker".to_string()]
        );
        assert!(c.allow_everyone_if_no_acl_found);
        assert!(ignored.is_empty(), "{ignored:?}");
        // A JKS store is not something Strom reads: named as ignored.
        let (_, ignored) = expanded(
            &[],
            "ssl.keystore.location=/k.jks\nssl.keystore.type=JKS\n",
            &[],
        );
        assert_eq!(
            ignored,
            vec![
                "ssl.keystore.location".to_string(),
                "ssl.keystore.type".to_string()
            ]
        );
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
