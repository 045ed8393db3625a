//! `strom topics ...` and `strom cluster`.

use std::io::Write;

use super::{CliError, TopicsCommand};
use crate::admin::NewTopic;

pub async fn run(target: &super::Target, cmd: TopicsCommand) -> Result<(), CliError> {
    let mut admin = target.admin();
    let mut out = std::io::stdout().lock();
    match cmd {
        TopicsCommand::List { internal } => {
            for name in admin.list_topics(internal).await? {
                let _ = writeln!(out, "{name}");
            }
        }
        TopicsCommand::Describe { topic } => {
            let d = admin.describe_topic(&topic).await?;
            let _ = writeln!(
                out,
                "topic {topic} id {} partitions {}{}",
                d.topic_id,
                d.partitions.len(),
                if d.internal { " (internal)" } else { "" }
            );
            let ids = |v: &[i32]| {
                v.iter()
                    .map(|b| b.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            };
            for p in &d.partitions {
                let _ = writeln!(
                    out,
                    "  partition {} leader {} epoch {} replicas [{}] isr [{}]{}",
                    p.partition,
                    p.leader,
                    p.leader_epoch,
                    ids(&p.replicas),
                    ids(&p.isr),
                    if p.offline.is_empty() {
                        String::new()
                    } else {
                        format!(" offline [{}]", ids(&p.offline))
                    }
                );
            }
            let set: Vec<_> = admin
                .describe_configs(&topic)
                .await?
                .into_iter()
                .filter(|c| c.source == "TOPIC_CONFIG")
                .collect();
            for c in set {
                let _ = writeln!(
                    out,
                    "  config {}={}",
                    c.name,
                    c.value.as_deref().unwrap_or("")
                );
            }
        }
        TopicsCommand::Create {
            topic,
            partitions,
            replication_factor,
            configs,
            validate_only,
        } => {
            let mut new = NewTopic::new(topic.as_str(), partitions, replication_factor);
            new.configs = configs;
            let t = admin.create_topic_with(&new, validate_only).await?;
            let _ = writeln!(
                out,
                "{} topic {topic} ({} partitions, replication factor {})",
                if validate_only {
                    "would create"
                } else {
                    "created"
                },
                t.partitions,
                t.replication_factor
            );
        }
        TopicsCommand::Alter {
            topic,
            set,
            delete,
            partitions,
        } => {
            if set.is_empty() && delete.is_empty() && partitions.is_none() {
                return Err(CliError::Input(
                    "say what to change: --set key=value, --delete key or --partitions N".into(),
                ));
            }
            let ops = super::config_ops(set, delete);
            if !ops.is_empty() {
                admin.alter_configs(&topic, &ops).await?;
                let _ = writeln!(out, "altered {} config(s) of {topic}", ops.len());
            }
            if let Some(n) = partitions {
                admin.create_partitions(&topic, n).await?;
                let _ = writeln!(out, "{topic} now has {n} partitions");
            }
        }
        TopicsCommand::Delete { topic } => {
            admin.delete_topic(&topic).await?;
            let _ = writeln!(out, "deleted topic {topic}");
        }
    }
    Ok(())
}

/// Brokers, the controller and every topic's partition leaders.
pub async fn cluster(target: &super::Target) -> Result<(), CliError> {
    let mut admin = target.admin();
    let c = admin.describe_cluster().await?;
    let topics = admin.list_topics(true).await?;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "cluster {}", c.cluster_id.as_deref().unwrap_or("?"));
    let _ = writeln!(
        out,
        "controller {}",
        if c.controller_id >= 0 {
            c.controller_id.to_string()
        } else {
            "unknown".into()
        }
    );
    for b in &c.brokers {
        let _ = writeln!(
            out,
            "broker {} at {}:{}{}",
            b.id,
            b.host,
            b.port,
            b.rack
                .as_deref()
                .map(|r| format!(" rack {r}"))
                .unwrap_or_default()
        );
    }
    let _ = writeln!(out, "topics {}", topics.len());
    for t in topics {
        let d = admin.describe_topic(&t).await?;
        let leaders: Vec<String> = d
            .partitions
            .iter()
            .map(|p| format!("{}:{}", p.partition, p.leader))
            .collect();
        let _ = writeln!(out, "  {t} leaders {}", leaders.join(" "));
    }
    Ok(())
}
