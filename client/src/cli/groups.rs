//! `strom groups list|describe|reset-offsets|delete`, like kafka-consumer-groups.sh, and
//! `strom groups configs|alter`, like kafka-configs.sh --entity-type groups.

use std::collections::BTreeMap;
use std::io::Write;

use super::{CliError, GroupsCommand};
use crate::admin::OffsetSpec;
use crate::TopicPartition;

/// Where reset-offsets moves a group: an explicit offset, or one ListOffsets finds.
#[derive(Clone, Copy)]
enum To {
    Offset(i64),
    Find(OffsetSpec),
}

pub async fn run(target: &super::Target, cmd: GroupsCommand) -> Result<(), CliError> {
    let mut admin = target.admin();
    let mut out = std::io::stdout().lock();
    match cmd {
        GroupsCommand::List => {
            for g in admin.list_groups().await? {
                let _ = writeln!(out, "{} {}", g.group_id, g.state);
            }
        }
        GroupsCommand::Configs { group } => {
            for c in admin.describe_group_configs(&group).await? {
                let _ = writeln!(
                    out,
                    "{}={} ({})",
                    c.name,
                    c.value.as_deref().unwrap_or(""),
                    c.source
                );
            }
        }
        GroupsCommand::Alter { group, set, delete } => {
            if set.is_empty() && delete.is_empty() {
                return Err(CliError::Input(
                    "say what to change: --set key=value or --delete key".into(),
                ));
            }
            let ops = super::config_ops(set, delete);
            admin.alter_group_configs(&group, &ops).await?;
            let _ = writeln!(out, "altered {} config(s) of group {group}", ops.len());
        }
        GroupsCommand::Describe { group } => {
            // A share group answers ShareGroupDescribe; any other is GROUP_ID_NOT_FOUND there.
            match admin.describe_share_group(&group).await {
                Ok(g) => {
                    let _ = writeln!(
                        out,
                        "share group {group} state {} epoch {} members {} coordinator {}",
                        g.state,
                        g.epoch,
                        g.members.len(),
                        g.coordinator
                    );
                    for m in &g.members {
                        let _ = writeln!(out, "{}", member_line(m));
                    }
                    for p in &g.partitions {
                        let _ = writeln!(
                            out,
                            "  {} {} start {} end {} lag {}",
                            p.tp.topic,
                            p.tp.partition,
                            p.start,
                            p.end.map_or("?".into(), |e| e.to_string()),
                            p.lag.map_or("?".into(), |e| e.to_string())
                        );
                    }
                    return Ok(());
                }
                Err(e) if e.code() == Some(GROUP_ID_NOT_FOUND) => {}
                Err(e) => return Err(e.into()),
            }
            let g = admin.describe_group(&group).await?;
            let _ = writeln!(
                out,
                "group {group} state {} protocol {} members {} coordinator {}",
                g.state,
                if g.protocol.is_empty() {
                    "-"
                } else {
                    &g.protocol
                },
                g.members.len(),
                g.coordinator
            );
            for m in &g.members {
                let _ = writeln!(out, "{}", member_line(m));
            }
            for l in admin.group_lag(&group).await? {
                let _ = writeln!(
                    out,
                    "  {} {} committed {} end {} lag {}",
                    l.tp.topic,
                    l.tp.partition,
                    l.committed,
                    l.end.map_or("?".into(), |e| e.to_string()),
                    l.lag.map_or("?".into(), |e| e.to_string())
                );
            }
        }
        GroupsCommand::ResetOffsets {
            group,
            topic,
            to_earliest,
            to_latest,
            to_offset,
            execute,
        } => {
            let to = match (to_earliest, to_latest, to_offset) {
                (true, _, _) => To::Find(OffsetSpec::Earliest),
                (_, true, _) => To::Find(OffsetSpec::Latest),
                (_, _, Some(n)) => To::Offset(n),
                _ => {
                    return Err(CliError::Input(
                        "say where to: --to-earliest, --to-latest or --to-offset N".into(),
                    ))
                }
            };
            let d = admin.describe_topic(&topic).await?;
            let mut plan: BTreeMap<TopicPartition, i64> = BTreeMap::new();
            for p in &d.partitions {
                let tp = TopicPartition::new(topic.as_str(), p.partition);
                let target = match to {
                    To::Offset(n) => n,
                    To::Find(spec) => admin.list_offset(&tp, spec).await?,
                };
                plan.insert(tp, target);
            }
            for (tp, target) in &plan {
                let _ = writeln!(out, "{} {} -> {target}", tp.topic, tp.partition);
            }
            if !execute {
                let _ = writeln!(out, "(dry run: add --execute to apply)");
                return Ok(());
            }
            // A share group's start offsets move at its partitions' leaders; any other group
            // is GROUP_ID_NOT_FOUND there and commits its offsets.
            match admin.alter_share_group_offsets(&group, &plan).await {
                Ok(()) => {
                    let _ = writeln!(
                        out,
                        "reset {} partition(s) of {topic} for share group {group}",
                        plan.len()
                    );
                    return Ok(());
                }
                Err(e) if e.code() == Some(GROUP_ID_NOT_FOUND) => {}
                Err(e) => return Err(e.into()),
            }
            admin.alter_group_offsets(&group, &plan).await?;
            let _ = writeln!(
                out,
                "reset {} partition(s) of {topic} for {group}",
                plan.len()
            );
        }
        GroupsCommand::DeleteOffsets { group, topic } => {
            // As kafka-share-groups.sh --delete-offsets: TOPIC STATUS per topic.
            let mut failed = false;
            let _ = writeln!(out, "TOPIC STATUS");
            for (name, outcome) in admin.delete_share_group_offsets(&group, &topic).await? {
                match outcome {
                    Ok(()) => {
                        let _ = writeln!(out, "{name} Successful");
                    }
                    Err(e) => {
                        failed = true;
                        let _ = writeln!(out, "{name} Error: {e}");
                    }
                }
            }
            if failed {
                return Err(CliError::Input(format!(
                    "some topics of share group {group} were not deleted"
                )));
            }
        }
        GroupsCommand::Delete { group } => {
            admin.delete_group(&group).await?;
            let _ = writeln!(out, "deleted group {group}");
        }
    }
    Ok(())
}

const GROUP_ID_NOT_FOUND: i16 = 69;

/// One member as `describe` prints it.
fn member_line(m: &crate::admin::MemberDescription) -> String {
    format!(
        "  member {}{} client {} host {} assignment {}",
        m.member_id,
        m.group_instance_id
            .as_deref()
            .map(|i| format!(" instance {i}"))
            .unwrap_or_default(),
        m.client_id,
        m.host,
        describe_assignment(&m.assignment)
    )
}

/// "topic:p,p topic:p" (or "-" for none).
fn describe_assignment(tps: &[TopicPartition]) -> String {
    if tps.is_empty() {
        return "-".into();
    }
    crate::partitions_by_topic(tps)
        .iter()
        .map(|(t, ps)| {
            format!(
                "{t}:{}",
                ps.iter()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}
