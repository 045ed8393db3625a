//! `strom consume TOPIC`: records printed through a kcat-like template (or as JSON lines),
//! read by the library consumer, alone (`--partition`, `--offset`) or as a member of a group
//! (`--group`), which commits what it printed; or as a member of a share group
//! (`--share-group`), which accepts each record it printed and releases any it did not.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use bytes::Bytes;

use super::{CliError, ConsumeArgs};
use crate::consumer::{Consumer, ConsumerRecord, OffsetAndMetadata, OffsetReset};
use crate::TopicPartition;

/// Where reading starts, from `--offset` / `--from-beginning`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    Beginning,
    End,
    At(i64),
    /// This many records before the end.
    FromEnd(i64),
}

fn parse_start(s: &str) -> Result<Start, CliError> {
    match s {
        "beginning" | "earliest" => Ok(Start::Beginning),
        "end" | "latest" => Ok(Start::End),
        _ => match s.parse::<i64>() {
            Ok(n) if n >= 0 => Ok(Start::At(n)),
            Ok(n) => Ok(Start::FromEnd(-n)),
            Err(_) => Err(CliError::Input(format!(
                "--offset '{s}' is not a number, -N, beginning or end"
            ))),
        },
    }
}

pub async fn run(target: &super::Target, a: ConsumeArgs) -> Result<(), CliError> {
    if let Some(group) = a.share_group.clone() {
        return run_share(target, a, group).await;
    }
    let start = if a.from_beginning {
        Start::Beginning
    } else {
        parse_start(&a.offset)?
    };
    // A missing topic is a clear error, not a silent wait.
    let topic = target.admin().describe_topic(&a.topic).await?;
    let mut config = target.consumer_config();
    config.enable_auto_commit = false;
    config.client_rack = a.client_rack.clone();
    let mut consumer = match &a.group {
        Some(group) => {
            config.group_id = Some(group.clone());
            config.auto_offset_reset = match start {
                Start::Beginning => OffsetReset::Earliest,
                Start::End => OffsetReset::Latest,
                _ => {
                    return Err(CliError::Input(
                        "with --group, --offset is beginning or end: where a partition with no committed offset starts".into(),
                    ))
                }
            };
            let mut c = Consumer::new(config)?;
            c.subscribe(&[a.topic.as_str()])?;
            c
        }
        None => {
            let partitions: Vec<i32> = match a.partition {
                Some(p) if topic.partitions.iter().any(|d| d.partition == p) => vec![p],
                Some(p) => {
                    return Err(CliError::Input(format!(
                        "partition {p} of '{}' does not exist ({} partitions)",
                        a.topic,
                        topic.partitions.len()
                    )))
                }
                None => topic.partitions.iter().map(|d| d.partition).collect(),
            };
            let tps: Vec<TopicPartition> = partitions
                .iter()
                .map(|p| TopicPartition::new(a.topic.as_str(), *p))
                .collect();
            let mut c = Consumer::new(config)?;
            c.assign(tps.clone()).await?;
            for tp in &tps {
                match start {
                    Start::Beginning => c.seek_to_beginning(tp)?,
                    Start::End => c.seek_to_end(tp)?,
                    Start::At(n) => c.seek(tp, n)?,
                    Start::FromEnd(n) => {
                        c.seek_to_end(tp)?;
                        let end = c.position(tp).await?;
                        c.seek_to_beginning(tp)?;
                        let first = c.position(tp).await?;
                        c.seek(tp, (end - n).max(first))?;
                    }
                }
            }
            c
        }
    };

    let stop = tokio::signal::ctrl_c();
    tokio::pin!(stop);
    let mut printed = 0u64;
    // The next offset after what was printed, per partition: what a group commits.
    let mut done: BTreeMap<TopicPartition, i64> = BTreeMap::new();
    let mut committed: BTreeMap<TopicPartition, i64> = BTreeMap::new();
    let result: Result<(), CliError> = async {
        loop {
            let records = tokio::select! {
                r = consumer.poll(Duration::from_millis(500)) => r?,
                _ = &mut stop => break,
            };
            let mut out = std::io::stdout().lock();
            for r in &records {
                if a.count.is_some_and(|c| printed >= c) {
                    break;
                }
                if out.write_all(render(&a.format, r).as_bytes()).is_err() {
                    return Ok(()); // stdout closed (piped into head): done
                }
                printed += 1;
                done.insert(
                    TopicPartition::new(r.topic.as_str(), r.partition),
                    r.offset + 1,
                );
            }
            let _ = out.flush();
            drop(out);
            if a.group.is_some() && done != committed {
                let _ = consumer.commit_offsets_async(offsets(&done));
                committed = done.clone();
            }
            if a.count.is_some_and(|c| printed >= c) {
                break;
            }
            if !a.follow && a.count.is_none() {
                let joined = a.group.is_none() || consumer.generation().is_some();
                if joined && (consumer.assignment().is_empty() || consumer.at_end()) {
                    break;
                }
            }
        }
        Ok(())
    }
    .await;
    if a.group.is_some() && !done.is_empty() {
        consumer.commit_offsets_sync(offsets(&done)).await?;
    }
    consumer.close().await;
    result
}

/// `--share-group`: a share consumer with explicit acknowledgements, so that records past
/// `--count` go back to the group (released) instead of being accepted unprinted.
async fn run_share(target: &super::Target, a: ConsumeArgs, group: String) -> Result<(), CliError> {
    use crate::share::{AcknowledgeType, ShareConsumer, ShareConsumerConfig};
    target.admin().describe_topic(&a.topic).await?;
    let mut config =
        ShareConsumerConfig::new(&target.bootstrap, &group).with_security(target.security.clone());
    config.explicit_acknowledgement = true;
    let mut consumer = ShareConsumer::new(config).map_err(share_error)?;
    consumer.subscribe(&[a.topic.as_str()]);
    let stop = tokio::signal::ctrl_c();
    tokio::pin!(stop);
    let mut printed = 0u64;
    let result: Result<(), CliError> = async {
        loop {
            let records = tokio::select! {
                r = consumer.poll(Duration::from_millis(1000)) => r.map_err(share_error)?,
                _ = &mut stop => break,
            };
            let mut out = std::io::stdout().lock();
            let mut closed = false;
            for r in &records {
                let kind = if closed || a.count.is_some_and(|c| printed >= c) {
                    AcknowledgeType::Release
                } else if out
                    .write_all(render(&a.format, &r.record).as_bytes())
                    .is_err()
                {
                    closed = true; // stdout closed (piped into head): the rest go back
                    AcknowledgeType::Release
                } else {
                    printed += 1;
                    AcknowledgeType::Accept
                };
                consumer.acknowledge(r, kind).map_err(share_error)?;
            }
            let _ = out.flush();
            drop(out);
            consumer.commit().await.map_err(share_error)?;
            if closed || a.count.is_some_and(|c| printed >= c) {
                break;
            }
            if !a.follow
                && a.count.is_none()
                && records.is_empty()
                && !consumer.assignment().is_empty()
            {
                break;
            }
        }
        Ok(())
    }
    .await;
    consumer.close().await.map_err(share_error)?;
    result
}

fn share_error(e: crate::share::ShareConsumerError) -> CliError {
    use crate::share::ShareConsumerError as E;
    match e {
        E::Client(c) => c.into(),
        E::Broker(b) => super::broker_error(b, "share group"),
        E::Usage(m) => CliError::Input(m),
    }
}

fn offsets(done: &BTreeMap<TopicPartition, i64>) -> Vec<(TopicPartition, OffsetAndMetadata)> {
    done.iter()
        .map(|(tp, o)| (tp.clone(), OffsetAndMetadata::new(*o)))
        .collect()
}

fn text(b: &Option<Bytes>) -> String {
    b.as_ref()
        .map(|v| String::from_utf8_lossy(v).to_string())
        .unwrap_or_default()
}

/// One record through `format`: `json`, or a template with kcat's `%` fields.
pub(super) fn render(format: &str, r: &ConsumerRecord) -> String {
    if format == "json" {
        let headers: BTreeMap<String, String> = r
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), text(v)))
            .collect();
        return serde_json::json!({
            "topic": r.topic, "partition": r.partition, "offset": r.offset,
            "timestamp": r.timestamp,
            "key": r.key.as_ref().map(|k| String::from_utf8_lossy(k).to_string()),
            "value": r.value.as_ref().map(|v| String::from_utf8_lossy(v).to_string()),
            "headers": headers,
        })
        .to_string()
            + "\n";
    }
    let mut out = String::new();
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, chars.peek().copied()) {
            ('%', Some(n)) => {
                chars.next();
                match n {
                    't' => out.push_str(&r.topic),
                    'p' => out.push_str(&r.partition.to_string()),
                    'o' => out.push_str(&r.offset.to_string()),
                    'k' => out.push_str(&text(&r.key)),
                    'v' => out.push_str(&text(&r.value)),
                    'K' => out.push_str(&r.key.as_ref().map_or(-1, |k| k.len() as i64).to_string()),
                    'S' => {
                        out.push_str(&r.value.as_ref().map_or(-1, |v| v.len() as i64).to_string())
                    }
                    'T' => out.push_str(&r.timestamp.to_string()),
                    'h' => out.push_str(
                        &r.headers
                            .iter()
                            .map(|(k, v)| format!("{k}={}", text(v)))
                            .collect::<Vec<_>>()
                            .join(","),
                    ),
                    '%' => out.push('%'),
                    other => {
                        out.push('%');
                        out.push(other);
                    }
                }
            }
            ('\\', Some('n')) => {
                chars.next();
                out.push('\n');
            }
            ('\\', Some('t')) => {
                chars.next();
                out.push('\t');
            }
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> ConsumerRecord {
        ConsumerRecord {
            topic: "t".into(),
            partition: 2,
            offset: 41,
            timestamp: 1700,
            key: Some(Bytes::from_static(b"k")),
            value: Some(Bytes::from_static(b"hello")),
            headers: vec![
                ("a".into(), Some(Bytes::from_static(b"1"))),
                ("b".into(), None),
            ],
            leader_epoch: 0,
        }
    }

    #[test]
    fn templates_fill_kcat_fields() {
        assert_eq!(
            render("%t/%p@%o %k=%v [%h] %T %K %S %% %x\\n", &record()),
            "t/2@41 k=hello [a=1,b=] 1700 1 5 % %x\n"
        );
        let none = ConsumerRecord {
            key: None,
            ..record()
        };
        assert_eq!(render("%K", &none), "-1");
    }

    #[test]
    fn json_lines_carry_every_field() {
        let v: serde_json::Value = serde_json::from_str(&render("json", &record())).expect("json");
        assert_eq!(v["offset"], 41);
        assert_eq!(v["key"], "k");
        assert_eq!(v["headers"]["a"], "1");
    }

    #[test]
    fn start_positions() {
        assert_eq!(parse_start("beginning").ok(), Some(Start::Beginning));
        assert_eq!(parse_start("end").ok(), Some(Start::End));
        assert_eq!(parse_start("12").ok(), Some(Start::At(12)));
        assert_eq!(parse_start("-5").ok(), Some(Start::FromEnd(5)));
        assert!(parse_start("soon").is_err());
    }
}
